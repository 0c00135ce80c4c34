"""Piccolo's configuration, for its CLI (migrations). The app and workers bind the
engine themselves at start-up via ``core.db``; both read the same ``DATABASE_URL``."""

from piccolo.conf.apps import AppRegistry

from core.db import APP_MODULES, make_engine
from core.settings import load_settings

DB = make_engine(load_settings().database_url)

APP_REGISTRY = AppRegistry(apps=list(APP_MODULES))
