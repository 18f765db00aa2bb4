#!/bin/sh
# Sets up PostgreSQL for Orderly, once, as a superuser: the service's own
# login (no superuser, no role creation), its database, and one login per
# slot for the components' `sql` capability. The compose file runs it when
# the postgres container first initialises its data; run it by hand (with
# PGHOST and friends set) to prepare any other server.
#
# Settings (environment): POSTGRES_USER (the superuser to run as),
# ORDERLY_DB_USER, ORDERLY_DB_PASSWORD, ORDERLY_DB_NAME,
# COMPONENT_DB_ROLE_PREFIX, COMPONENT_DB_PASSWORD.
set -eu

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v service_login="${ORDERLY_DB_USER:-orderly}" \
    -v service_password="${ORDERLY_DB_PASSWORD:-orderly}" \
    -v database="${ORDERLY_DB_NAME:-orderly}" \
    -v prefix="${COMPONENT_DB_ROLE_PREFIX:-orderly_rules}" \
    -v component_password="${COMPONENT_DB_PASSWORD:-orderly-rules}" <<'SQL'
-- The service: owns its database and the tables its migrations create, so
-- it can grant components SELECT on the views they are allowed; nothing more.
CREATE ROLE :"service_login" LOGIN PASSWORD :'service_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE :"database" OWNER :"service_login";

-- One login per slot: it may log in, and read what the service grants it.
\set validation :prefix _validation
\set pricing :prefix _pricing
\set fulfillment :prefix _fulfillment
CREATE ROLE :"validation" LOGIN PASSWORD :'component_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
CREATE ROLE :"pricing" LOGIN PASSWORD :'component_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
CREATE ROLE :"fulfillment" LOGIN PASSWORD :'component_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
ALTER ROLE :"validation" SET default_transaction_read_only = on;
ALTER ROLE :"pricing" SET default_transaction_read_only = on;
ALTER ROLE :"fulfillment" SET default_transaction_read_only = on;
ALTER ROLE :"validation" SET statement_timeout = '5s';
ALTER ROLE :"pricing" SET statement_timeout = '5s';
ALTER ROLE :"fulfillment" SET statement_timeout = '5s';
SQL
