-- Per-org store bindings: the store URL sealed with AES-256-GCM (org id as associated data).
CREATE TABLE org_stores (
    org_id     text PRIMARY KEY REFERENCES orgs (id),
    url_cipher bytea NOT NULL,
    url_nonce  bytea NOT NULL,
    updated_at bigint NOT NULL
);
