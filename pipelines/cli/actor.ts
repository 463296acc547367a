import { userInfo } from 'node:os';

/**
 * Who runs a command, as kept with what it changes (`replayed_by`, `resolved_by`, `requested_by`): `--by`
 * when given, else CELLAR_ACTOR, else the user name, else `cellar`.
 */
export function actorOf(by?: string): string {
  if (by) return by;
  if (process.env.CELLAR_ACTOR) return process.env.CELLAR_ACTOR;
  try {
    return userInfo().username;
  } catch {
    return 'cellar';
  }
}
