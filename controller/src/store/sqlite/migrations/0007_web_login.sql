-- coloc controller schema, version 7: the login the node's proxy asks for
-- in front of an app without one of its own (docs/APPS.md, "Web access").
-- Only the bcrypt hash is kept; the password never reaches colocd.
ALTER TABLE app_instances ADD COLUMN web_user TEXT;
ALTER TABLE app_instances ADD COLUMN web_password_hash TEXT;
