-- The client address of each audited API action: the peer's, or behind a trusted proxy
-- (CELLAR_API_TRUST_PROXY) the one its X-Forwarded-For names.
ALTER TABLE cellar.api_audit ADD COLUMN client_addr text;
