-- Administrative statements. Identifiers ({name}) are filled with psycopg.sql.Identifier,
-- values with parameters.

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- name: create_database
CREATE DATABASE {name}

-- name: create_database_from_template
CREATE DATABASE {name} TEMPLATE {template}

-- name: drop_database
DROP DATABASE IF EXISTS {name} WITH (FORCE)
