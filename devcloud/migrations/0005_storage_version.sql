-- Which bytes on disk hold an object's current content (`{storage_dir}/{bucket}/{version}`),
-- as storage-api's `version` column. A fresh version per write keeps readers of the old
-- bytes undisturbed while an upsert lands.
ALTER TABLE storage.objects ADD COLUMN version text;
