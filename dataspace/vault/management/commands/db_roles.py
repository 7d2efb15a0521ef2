"""``manage.py db_roles``: one PostgreSQL login role per process role, with the GRANTs of
``dataspace.db_grants``. Lives with the vault because what it mostly guards is key material.

Run it as the owner of the tables (the role that ran ``migrate``), after every ``migrate``: a new
table gets no privileges until it is classified and this runs again (fail closed)."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from psycopg import sql

from dataspace import db_grants
from dataspace.roles import Role


def model_tables() -> list[str]:
    """Every table the models create (auto-created many-to-many tables included)."""
    tables = {
        model._meta.db_table
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }
    return sorted(tables)


def role_name(prefix: str, role: Role) -> str:
    return f"{prefix}{role.value}"


def password_variable(role: Role) -> str:
    return f"REDLAKE_DB_PASSWORD_{role.value.upper()}"


def _columns(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s ORDER BY ordinal_position",
        [table],
    )
    return [row[0] for row in cursor.fetchall()]


def _sequences(cursor: Any, table: str, columns: list[str]) -> list[str]:
    found = []
    for column in columns:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
        sequence = cursor.fetchone()[0]
        if sequence:
            found.append(sequence)
    return found


def statements(cursor: Any, *, prefix: str, passwords: dict[Role, str]) -> list[sql.Composable]:
    """The whole script: roles, then every grant from nothing (earlier grants revoked first)."""
    cursor.execute("SELECT current_database()")
    database = cursor.fetchone()[0]
    script: list[sql.Composable] = []
    for role in db_grants.DB_ROLES:
        name = sql.Identifier(role_name(prefix, role))
        script.append(
            sql.SQL("DO $$ BEGIN CREATE ROLE {} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$").format(name)
        )
        options: sql.Composable = sql.SQL(
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"
        )
        if role in passwords:
            options = sql.SQL("{} PASSWORD {}").format(options, sql.Literal(passwords[role]))
        script.append(sql.SQL("ALTER ROLE {} WITH {}").format(name, options))
        script.append(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), name))
        script.append(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name))
        script.append(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(name))
        script.append(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(name))
    missing = []
    for table in model_tables():
        columns = _columns(cursor, table)
        if not columns:
            missing.append(table)
            continue
        for grant in db_grants.grants_for(table, columns):
            name = sql.Identifier(role_name(prefix, grant.role))
            privileges = list(grant.privileges)
            if grant.columns is not None and "SELECT" in privileges:
                privileges.remove("SELECT")
                script.append(
                    sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, grant.columns)), sql.Identifier(table), name
                    )
                )
            if privileges:
                script.append(
                    sql.SQL("GRANT {} ON {} TO {}").format(
                        sql.SQL(", ").join(map(sql.SQL, privileges)), sql.Identifier(table), name
                    )
                )
            if "INSERT" in grant.privileges:
                for sequence in _sequences(cursor, table, columns):
                    # pg_get_serial_sequence gives a qualified, quoted name.
                    script.append(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.SQL(sequence), name))
    if missing:
        raise CommandError(f"Tables not in the database (run migrate first): {', '.join(missing)}.")
    return script


class Command(BaseCommand):
    help = (
        "Create one PostgreSQL login role per Redlake process role and grant it exactly its table "
        "privileges (dataspace/db_grants.py). Run as the tables' owner after migrate."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--apply", action="store_true", help="run the script in one transaction")
        action.add_argument("--print-sql", action="store_true", help="print the script (passwords elided)")
        parser.add_argument("--prefix", default="redlake_", help="role names are <prefix><role> (default redlake_)")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Database roles and GRANTs need PostgreSQL (DATABASE_URL=postgres://...).")
        prefix = options["prefix"]
        given = {role: os.environ.get(password_variable(role), "") for role in db_grants.DB_ROLES}
        passwords = {role: password for role, password in given.items() if password}
        with transaction.atomic(), connection.cursor() as cursor:
            if options["print_sql"]:
                for statement in statements(cursor, prefix=prefix, passwords={r: "<elided>" for r in passwords}):
                    self.stdout.write(statement.as_string(cursor.connection) + ";")
                return
            script = statements(cursor, prefix=prefix, passwords=passwords)
            for statement in script:
                cursor.execute(statement)
        roles = ", ".join(role_name(prefix, role) for role in db_grants.DB_ROLES)
        self.stdout.write(f"granted {len(script)} statements to {roles}")
