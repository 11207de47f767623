-- 0008: review everything stored before garbage collection existed, once.

INSERT INTO gc_blob_reviews (digest, event) SELECT digest, 'backfill' FROM blobs
ON CONFLICT DO NOTHING;
INSERT INTO gc_link_reviews (repository_id, digest, event)
SELECT repository_id, digest, 'backfill' FROM v2_repository_blobs
ON CONFLICT DO NOTHING;
INSERT INTO gc_manifest_reviews (repository_id, digest, event)
SELECT repository_id, digest, 'backfill' FROM v2_manifests
ON CONFLICT DO NOTHING;
INSERT INTO gc_v1_image_reviews (image_id, event) SELECT image_id, 'backfill' FROM v1_images
ON CONFLICT DO NOTHING;
