"""The gateway's OpenAPI description: the chat request it accepts and the responses it gives.

``validate_request`` (gateway.py) is what decides; this schema describes the same rules for clients
and for fuzzers (the serving stage runs schemathesis against it: no 5xx, every response as declared).
It is built from the running settings, so the limits it states (max_tokens, the served model names)
are the server's own.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}

TEXT_PART = {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
URL = {"type": "object", "required": ["url"], "properties": {"url": {"type": "string", "description": "a base64 data: URL; a path or file:// URL under the server's --media-dir; http(s) only with --allow-remote-media"}}}
MEDIA_PARTS = [
    {"type": "object", "required": ["type", "video_url"], "properties": {"type": {"const": "video_url"}, "video_url": URL}},
    {"type": "object", "required": ["type", "audio_url"], "properties": {"type": {"const": "audio_url"}, "audio_url": URL}},
    {"type": "object", "required": ["type", "input_audio"], "properties": {"type": {"const": "input_audio"}, "input_audio": {
        "type": "object", "required": ["data"], "properties": {"data": {"type": "string", "contentEncoding": "base64"}, "format": {"enum": ["wav", "mp3", "flac", "ogg", "m4a", "webm"]}}}}},
]
TOOL_CALL = {"type": "object", "required": ["id", "function"], "properties": {
    "id": {"type": "string"}, "type": {"const": "function"},
    "function": {"type": "object", "required": ["name", "arguments"], "properties": {"name": {"type": "string"}, "arguments": {"type": "string", "description": "JSON text"}}}}}
TOOL = {"type": "object", "required": ["type", "function"], "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "not the name of a server-side expert tool"},
        "description": {"type": "string"}, "parameters": {"type": "object", "description": "a JSON schema"}}}}}


def _messages() -> dict[str, Any]:
    text = {"oneOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART}]}
    user = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"oneOf": [TEXT_PART, *MEDIA_PARTS]}}]}
    return {"type": "array", "minItems": 1, "items": {"oneOf": [
        {"type": "object", "required": ["role", "content"], "properties": {"role": {"const": "system"}, "content": text}},
        {"type": "object", "required": ["role", "content"], "properties": {"role": {"const": "user"}, "content": user, "name": {"type": "string"}}, "description": "media parts in user messages only"},
        {"type": "object", "required": ["role"], "properties": {"role": {"const": "assistant"}, "content": {"oneOf": [text, {"type": "null"}]}, "tool_calls": {"type": "array", "items": TOOL_CALL}},
         "description": "content is required unless the message has tool_calls"},
        {"type": "object", "required": ["role", "content", "tool_call_id"], "properties": {"role": {"const": "tool"}, "content": text, "tool_call_id": {"type": "string", "minLength": 1}, "name": {"type": "string"}}},
    ]}}


def chat_request_schema(models: tuple[str, ...], max_tokens_limit: int, experts: tuple[str, ...]) -> dict[str, Any]:
    tokens = {"type": "integer", "minimum": 1, "maximum": max_tokens_limit}
    return {
        "type": "object",
        "required": ["model", "messages"],
        "dependentRequired": {"tool_choice": ["tools"]},
        "properties": {
            "model": {"enum": list(models)},
            "messages": _messages(),
            "stream": {"type": "boolean"},
            "max_tokens": tokens,
            "max_completion_tokens": tokens,
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "seed": {"type": "integer"},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
            "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "logprobs": {"type": "boolean"},
            "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
            "n": {"const": 1},
            "response_format": {"oneOf": [
                {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
                {"type": "object", "required": ["type", "json_schema"], "properties": {"type": {"const": "json_schema"}, "json_schema": {
                    "type": "object", "required": ["name", "schema"], "properties": {"name": {"type": "string"}, "schema": {"type": "object"}, "strict": {"type": "boolean"}}}}}]},
            "tools": {"type": "array", "maxItems": 64, "items": TOOL},
            "tool_choice": {"oneOf": [{"enum": ["none", "auto", "required"]}, {"type": "object", "required": ["type", "function"], "properties": {
                "type": {"const": "function"}, "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}]},
            "deemo": {"type": "object", "additionalProperties": False, "description": "deemo-llama's options", "properties": {
                "experts": {"enum": list(experts)}, "tool_loop": {"type": "boolean"}, "return_media": {"type": "boolean"},
                "labels": {"type": "array", "minItems": 2, "maxItems": 32, "uniqueItems": True, "items": {"type": "string", "minLength": 1, "maxLength": 40}}}},
        },
    }


CHAT_RESPONSE = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"}, "model": {"type": "string"},
        "choices": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["index", "message", "finish_reason"], "properties": {
            "index": {"type": "integer"},
            "message": {"type": "object", "required": ["role"], "properties": {"role": {"const": "assistant"}, "content": {"type": ["string", "null"]}, "tool_calls": {"type": "array", "items": TOOL_CALL}}},
            "finish_reason": {"type": ["string", "null"]}}}},
        "usage": {"type": "object", "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")}},
        "deemo": {"type": "object", "description": "evidence, label, scores, fusion, mode, deidentification, tool_trace, reasoning_corrections"},
    },
}

# one server-sent event (OpenAPI < 3.2: the schema of a text/event-stream describes each event)
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {
    "type": "string", "description": "a chat.completion.chunk as JSON (with a `deemo` field on the first chunk and on tool steps), an error object, or [DONE]"}}}

ERRORS = {
    "400": "malformed request or media (the message names the problem and the limit)",
    "401": "invalid or missing API key",
    "403": "a media path outside the allow-list, or remote media while fetching is off",
    "404": "unknown model",
    "413": "request or media too large",
    "422": "the model made an invalid tool call",
    "429": "the queue is full or the wait timed out (Retry-After)",
    "502": "the model server failed",
    "503": "the model server is restarting or unreachable (Retry-After)",
}


def _errors(*codes: str) -> dict[str, Any]:
    return {c: {"description": ERRORS[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def chat_operation(models: tuple[str, ...], max_tokens_limit: int, experts: tuple[str, ...]) -> dict[str, Any]:
    """``openapi_extra`` for POST /v1/chat/completions (the handler reads the body itself)."""
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": chat_request_schema(models, max_tokens_limit, experts)}}},
        "responses": {
            "200": {"description": "the answer; with stream=true, server-sent events of chat.completion.chunk objects", "content": {
                "application/json": {"schema": CHAT_RESPONSE}, "text/event-stream": {"schema": SSE_EVENT}}},
            **_errors("400", "401", "403", "404", "413", "422", "429", "502", "503"),
        },
    }


HEALTH = {"type": "object", "required": ["status", "backend", "admission"], "properties": {
    "status": {"enum": ["ok", "unavailable"]}, "backend": {"type": "object"}, "admission": {"type": "object"}}}

MODELS = {"type": "object", "required": ["object", "data"], "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
    "type": "object", "required": ["id", "object"], "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"}, "owned_by": {"type": "string"}}}}}}


def health_operation() -> dict[str, Any]:
    body = {"content": {"application/json": {"schema": HEALTH}}}
    return {"responses": {"200": {"description": "serving", **body}, "503": {"description": "the model server is not ready", **body}}}


def models_operation() -> dict[str, Any]:
    return {"responses": {"200": {"description": "the served models", "content": {"application/json": {"schema": MODELS}}}, **_errors("401")}}
