"""Checking a GenerateRequest and turning it into backend settings."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from contentgen_service.backends.base import GenerationRequest
from contentgen_service.errors import RpcFailure
from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.sampling import seed_from_request_id

MAX_TEMPERATURE = 2.0
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what one request may ask for (server settings)."""

    max_prompt_chars: int = 8000
    max_tokens: int = 1024
    max_stop_sequences: int = 4
    max_stop_chars: int = 64
    max_request_id_chars: int = 128


def request_problems(request: pb.GenerateRequest, limits: RequestLimits) -> list[str]:
    """Return one sentence per thing wrong with ``request`` (empty when valid)."""
    problems = []
    id_rule = f"1-{limits.max_request_id_chars} printable ASCII characters"
    request_id = request.request_id
    if not request_id:
        problems.append(
            f"request_id is required: an idempotency key of {id_rule}, reused when retrying the same request"
        )
    elif not (request_id.isascii() and request_id.isprintable()):
        problems.append(f"request_id must be {id_rule}; it holds other characters")
    elif len(request_id) > limits.max_request_id_chars:
        problems.append(f"request_id must be {id_rule}, got {len(request_id)}")
    if request.user_id <= 0:
        problems.append(f"user_id must be a positive integer (the owner's user ID), got {request.user_id}")
    prompt_chars = len(request.prompt)
    if not request.prompt.strip():
        problems.append(f"prompt must not be empty: send 1-{limits.max_prompt_chars} characters of text to continue")
    elif prompt_chars > limits.max_prompt_chars:
        problems.append(f"prompt is {prompt_chars} characters; the limit is {limits.max_prompt_chars}: shorten it")
    if not 1 <= request.max_tokens <= limits.max_tokens:
        problems.append(f"max_tokens must be between 1 and {limits.max_tokens}, got {request.max_tokens}")
    # Written as "not (lo <= x <= hi)" so that NaN is refused too.
    temperature = request.temperature
    if request.HasField("temperature") and not (0.0 <= temperature <= MAX_TEMPERATURE):
        problems.append(
            f"temperature must be between 0 and {MAX_TEMPERATURE:g} "
            f"(0 = always the most likely token), got {temperature:g}"
        )
    if request.HasField("top_p") and not (0.0 < request.top_p <= 1.0):
        problems.append(f"top_p must be greater than 0 and at most 1, got {request.top_p:g}")
    if len(request.stop) > limits.max_stop_sequences:
        problems.append(f"at most {limits.max_stop_sequences} stop sequences are allowed, got {len(request.stop)}")
    for position, sequence in enumerate(request.stop, start=1):
        if not 1 <= len(sequence) <= limits.max_stop_chars:
            problems.append(
                f"stop sequence {position} is {len(sequence)} characters; "
                f"each must be 1-{limits.max_stop_chars} characters"
            )
    return problems


def validated_request(request: pb.GenerateRequest, limits: RequestLimits) -> GenerationRequest:
    """Return the backend settings for a valid request.

    Raises RpcFailure(INVALID_ARGUMENT) listing every problem and the allowed
    range. An unset seed is derived from ``request_id`` so that retries of the
    same request produce the same text.
    """
    problems = request_problems(request, limits)
    if problems:
        raise RpcFailure(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid GenerateRequest: " + "; ".join(problems),
        )
    temperature = request.temperature if request.HasField("temperature") else DEFAULT_TEMPERATURE
    top_p = request.top_p if request.HasField("top_p") else DEFAULT_TOP_P
    return GenerationRequest(
        prompt=request.prompt,
        max_tokens=request.max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=request.seed if request.HasField("seed") else seed_from_request_id(request.request_id),
        stop=tuple(request.stop),
    )
