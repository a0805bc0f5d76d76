-- The tables of an upstream HMA (OpenMediaMatch) deployment that `hmas migrate from-hma` reads,
-- written from its storage model (storage/postgres/database.py and its Alembic migrations):
-- table and column names, types, keys and defaults as upstream's database has them.
-- The migration tests and `hmas bench migrate` create an HMA-shaped database with this file.

CREATE TABLE exchange (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    api_cls VARCHAR(255) NOT NULL,
    retain_api_data BOOLEAN NOT NULL DEFAULT FALSE,
    fetching_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    retain_data_with_unknown_signal_types BOOLEAN NOT NULL DEFAULT FALSE,
    typed_config JSON NOT NULL,           -- the collaboration config dataclass, as JSON
    credentials_json JSON                 -- per-exchange credentials (newer deployments)
);
CREATE UNIQUE INDEX ix_exchange_name ON exchange (name);

CREATE TABLE exchange_api_config (
    id SERIAL PRIMARY KEY,
    api VARCHAR NOT NULL,
    default_credentials_json JSON NOT NULL
);
CREATE UNIQUE INDEX ix_exchange_api_config_api ON exchange_api_config (api);

CREATE TABLE signal_index (
    id SERIAL PRIMARY KEY,
    signal_type VARCHAR(255) NOT NULL,
    signal_count INTEGER NOT NULL,
    updated_to_id INTEGER NOT NULL,
    updated_to_ts BIGINT NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    serialized_index_large_object_oid OID
);
CREATE UNIQUE INDEX ix_signal_index_signal_type ON signal_index (signal_type);

-- Signal types and their enabled ratio; a type without a row has ratio 1.0.
CREATE TABLE signal_type_override (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    enabled_ratio DOUBLE PRECISION NOT NULL DEFAULT 1.0
);
CREATE UNIQUE INDEX ix_signal_type_override_name ON signal_type_override (name);

CREATE TABLE bank (
    id SERIAL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    enabled_ratio DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    import_from_exchange_id INTEGER UNIQUE REFERENCES exchange (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX ix_bank_name ON bank (name);

CREATE TABLE exchange_data (
    id SERIAL PRIMARY KEY,
    collab_id INTEGER NOT NULL REFERENCES exchange (id) ON DELETE CASCADE,
    fetch_id TEXT NOT NULL,               -- str() of the exchange's record key
    pickled_fetch_signal_metadata BYTEA,
    fetched_metadata_summary JSON NOT NULL DEFAULT '[]',
    matched BOOLEAN NOT NULL DEFAULT FALSE,
    verification_result BOOLEAN,
    UNIQUE (collab_id, fetch_id)
);
CREATE INDEX ix_exchange_data_collab_id ON exchange_data (collab_id);

CREATE TABLE exchange_fetch_status (
    collab_id INTEGER PRIMARY KEY REFERENCES exchange (id) ON DELETE CASCADE,
    running_fetch_start_ts BIGINT,
    last_fetch_succeeded BOOLEAN,
    last_fetch_complete_ts BIGINT,
    is_up_to_date BOOLEAN NOT NULL DEFAULT FALSE,
    checkpoint_ts BIGINT,
    checkpoint_json JSON                  -- the exchange API's checkpoint dataclass, as JSON
);

CREATE TABLE bank_content (
    id SERIAL PRIMARY KEY,
    bank_id INTEGER NOT NULL REFERENCES bank (id) ON DELETE CASCADE,
    imported_from_id INTEGER UNIQUE REFERENCES exchange_data (id) ON DELETE CASCADE,
    disable_until_ts INTEGER NOT NULL DEFAULT 1,  -- 0 disabled, 1 enabled, larger: disabled until (unix s)
    original_content_uri VARCHAR,
    bank_content_metadata JSON,           -- {content_id, content_uri, json}: the client's metadata
    note VARCHAR(255)
);
CREATE INDEX ix_bank_content_bank_id ON bank_content (bank_id);

CREATE TABLE content_signal (
    content_id INTEGER NOT NULL REFERENCES bank_content (id) ON DELETE CASCADE,
    signal_type VARCHAR NOT NULL,
    signal_val TEXT NOT NULL,
    create_time TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    PRIMARY KEY (content_id, signal_type)
);
CREATE INDEX incremental_index_build_idx ON content_signal (signal_type, create_time, content_id);
