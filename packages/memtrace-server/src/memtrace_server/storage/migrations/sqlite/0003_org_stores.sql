-- Per-org store bindings: the store URL sealed with AES-256-GCM (org id as associated data).
CREATE TABLE org_stores (
    org_id     TEXT PRIMARY KEY REFERENCES orgs(id),
    url_cipher BLOB NOT NULL,
    url_nonce  BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
