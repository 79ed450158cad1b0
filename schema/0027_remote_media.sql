-- Remote media cache: fetched remote media lives in `media` (origin = the remote server), keyed by
-- (origin, media_id) like local uploads, so quarantine and the admin API cover it unchanged. This
-- index serves the cache purge (purge_media_cache: remote items by last access).
CREATE INDEX media_origin_last_access ON media(origin, last_access_ts);
