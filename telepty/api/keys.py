"""Typed application state: every service the handlers reach, by ``web.AppKey``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from telepty.daemon import Services

SERVICES: web.AppKey[Services] = web.AppKey("services")
