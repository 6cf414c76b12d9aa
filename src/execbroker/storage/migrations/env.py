"""Alembic environment: migrations run on the connection the broker hands over at start-up.

To write a new revision against a scratch database:
``alembic -c src/execbroker/storage/alembic.ini revision --autogenerate -m "…"``.
"""

from alembic import context
from sqlalchemy import create_engine

from execbroker.storage.tables import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    # Command-line use (autogenerate): a synchronous engine on the configured URL.
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///var/alembic.db")
    with engine.connect() as sync_connection:
        context.configure(
            connection=sync_connection, target_metadata=metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
