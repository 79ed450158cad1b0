-- Media repository: local uploads and (later) cached remote media, thumbnails, URL previews.

-- One row per piece of content. Local media has origin = our server name; remote media cached
-- through federation keeps its origin server (filesystem_id names the local copy).
CREATE TABLE media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    user_id TEXT,                      -- uploader (local media only)
    media_type TEXT,                   -- Content-Type as uploaded; NULL until uploaded
    upload_name TEXT,
    media_length BIGINT,               -- NULL while a /create id waits for its upload
    created_ts BIGINT NOT NULL,
    uploaded_ts BIGINT,                -- NULL: created by /media/v1/create, not uploaded yet
    unused_expires_ts BIGINT,          -- /create ids expire when not uploaded by then
    sha256 TEXT,
    filesystem_id TEXT NOT NULL,       -- the file's name in the media store
    authenticated BOOLEAN NOT NULL DEFAULT FALSE, -- uploaded under enable_authenticated_media
    url_cache TEXT,                    -- the URL when fetched for a URL preview
    quarantined_by TEXT,
    safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE,
    last_access_ts BIGINT,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX media_user_created ON media(user_id, created_ts);
CREATE INDEX media_sha256 ON media(sha256);

-- Generated thumbnails: width/height are the real dimensions of the stored image.
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    media_type TEXT NOT NULL,
    animated BOOLEAN NOT NULL DEFAULT FALSE,
    length BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method, media_type, animated)
);

-- Uploads refused by the virus scanner: the audit trail (the content itself is discarded).
CREATE TABLE media_scan_rejections (
    rejection_id TEXT PRIMARY KEY,
    user_id TEXT,
    ts BIGINT NOT NULL,
    client_ip TEXT,
    sha256 TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    media_type TEXT,
    upload_name TEXT,
    signature TEXT NOT NULL
);
CREATE INDEX media_scan_rejections_ts ON media_scan_rejections(ts);

-- URL preview results and failures, one row per URL, served until expires_ts.
CREATE TABLE url_previews (
    url TEXT PRIMARY KEY,
    fetched_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL,
    og TEXT,                           -- the OpenGraph JSON; NULL for a cached failure
    error_status INTEGER,
    error_code TEXT,
    error TEXT,
    media_id TEXT                      -- the local media holding the preview image
);
CREATE INDEX url_previews_expires ON url_previews(expires_ts);
