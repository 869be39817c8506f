"""GET /openapi.json: the HTTP door described in OpenAPI 3.1 (checked against real
responses by tests/e2e/http/test_openapi.py)."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "bad-args, bad-name, bad-encoding, unknown-command"),
    "401": _json(_ref("Error"), "not-logged-in (no, unknown or revoked token), bad-password"),
    "403": _json(_ref("Error"), "forbidden, banned, not-a-member"),
    "404": _json(_ref("Error"), "no-such-user, -chat, -message, -schedule, unknown path"),
    "409": _json(_ref("Error"), "name-taken, already-logged-in, too-many-sessions"),
    "413": _json(_ref("Error"), "too-large, line-too-long"),
    "429": _json(_ref("Error"), "rate-limited (Retry-After header)"),
    "500": _json(_ref("Error"), "internal"),
    "503": _json(_ref("Error"), "server-busy; unavailable (the store cannot commit: Retry-After)"),
}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]

_MESSAGE = {
    "type": "object",
    "required": ["type", "id", "chat", "from", "text", "ts", "reply_to", "replay"],
    "properties": {
        "type": {"const": "message"},
        "id": {"type": "integer"},
        "chat": {"type": "string"},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "text": {"type": "string"},
        "ts": {"type": "string"},
        "reply_to": {"type": ["integer", "null"]},
        "replay": {"type": "boolean"},
        "file": _ref("File"),
    },
}


def openapi_document() -> dict[str, Any]:
    """The whole document, as plain data."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatd HTTP door",
            "version": "1",
            "description": "The chat of the line protocol over HTTP (docs/http.md).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "retry_after": {"type": "number"},
                            },
                        }
                    },
                },
                "File": {
                    "type": "object",
                    "required": ["id", "name", "size", "sha256"],
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "size": {"type": "integer"},
                        "sha256": {"type": "string"},
                    },
                },
                "Message": _MESSAGE,
                "Notice": {
                    "type": "object",
                    "required": ["type", "event"],
                    "properties": {"type": {"const": "notice"}, "event": {"type": "string"}},
                },
                "Ok": {
                    "type": "object",
                    "required": ["type", "cmd"],
                    "properties": {"type": {"const": "ok"}, "cmd": {"type": "string"}},
                },
            },
        },
        "paths": {
            "/connect": {
                "post": {
                    "summary": "Log in (the first login creates the account); get a token",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "password": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["token", "user", "new", "unread"],
                                "properties": {
                                    "token": {"type": "string"},
                                    "user": {"type": "string"},
                                    "new": {"type": "boolean"},
                                    "unread": {"type": "integer"},
                                },
                            }
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/session": {
                "delete": {
                    "summary": "Revoke the token and log its session out",
                    "security": _AUTH,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["ok"],
                                "properties": {"ok": {"const": True}},
                            }
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/status": {
                "get": {
                    "summary": "The JSON-mode status reply's fields",
                    "security": _AUTH,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["server", "user", "sessions", "chats"],
                                "properties": {
                                    "server": {
                                        "type": "object",
                                        "required": ["version", "uptime_s", "online"],
                                    },
                                    "user": {"type": "string"},
                                    "sessions": {"type": "integer"},
                                    "chats": {"type": "array"},
                                },
                            }
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/send": {
                "post": {
                    "summary": "Send a message; Idempotency-Key makes retries safe",
                    "security": _AUTH,
                    "parameters": [
                        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["to", "text"],
                                    "properties": {
                                        "to": {"type": "string"},
                                        "text": {"type": "string"},
                                        "reply_to": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "ts"],
                                "properties": {
                                    "id": {"type": "integer"},
                                    "ts": {"type": "string"},
                                },
                            }
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/command": {
                "post": {
                    "summary": "Any line-protocol command; its JSON-mode ok object",
                    "security": _AUTH,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["line"],
                                    "properties": {"line": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {"200": _json(_ref("Ok")), **_ERRORS},
                }
            },
            "/events": {
                "get": {
                    "summary": "Messages and notices since a cursor: long-poll, or SSE",
                    "security": _AUTH,
                    "parameters": [
                        {"name": "since", "in": "query", "schema": {"type": "integer"}},
                        {"name": "timeout", "in": "query", "schema": {"type": "number"}},
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["events", "next"],
                                        "properties": {
                                            "events": {
                                                "type": "array",
                                                "items": {
                                                    "oneOf": [_ref("Message"), _ref("Notice")]
                                                },
                                            },
                                            "next": {"type": "integer"},
                                        },
                                    }
                                },
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
            "/ws": {
                "get": {
                    "summary": "WebSocket: the JSON Lines protocol, one object per text frame",
                    "parameters": [{"name": "token", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"101": {"description": "Switching Protocols"}, **_ERRORS},
                }
            },
            "/files": {
                "post": {
                    "summary": "Upload a file (the raw body) to a chat",
                    "security": _AUTH,
                    "parameters": [
                        {
                            "name": "to",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "name",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "file"],
                                "properties": {"id": {"type": "integer"}, "file": _ref("File")},
                            }
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/files/{id}": {
                "get": {
                    "summary": "A file's bytes",
                    "security": _AUTH,
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "the bytes; Content-Type, Content-Disposition, ETag",
                            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                        },
                        "304": {"description": "Not Modified (If-None-Match)"},
                        **_ERRORS,
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The web client",
                    "responses": {"200": {"description": "text/html"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }
