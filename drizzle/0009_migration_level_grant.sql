-- The API's /readyz and the worker's start compare the applied migrations with the ones their
-- build ships; they connect as creditflow_app, which may read the migration log and nothing else
-- of the drizzle schema.
GRANT USAGE ON SCHEMA drizzle TO creditflow_app;
--> statement-breakpoint
GRANT SELECT ON drizzle.__drizzle_migrations TO creditflow_app;
