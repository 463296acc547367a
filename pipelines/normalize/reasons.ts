/** The reason codes and the Rejection of the normalizer live on the ground floor (schemas/reasons.ts), with the records. */
export { REASONS, Rejection, type ReasonCode } from '../../schemas/reasons.js';
