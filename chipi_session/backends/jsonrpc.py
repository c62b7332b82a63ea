"""JSON-RPC 2.0 over HTTP: single calls and batches, node errors as ``StarknetRpcError``.

The transport half of ``StarknetRpcBackend`` (which adds the Starknet reads): ids, batching with
answers matched by id, HTTP statuses mapped to stable ``ErrorCode``s, the URL (which may hold a
provider key) never in a message, only its origin.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from ..errors import ChipiSessionError, ErrorCode
from ..http import HttpClient, HttpResponse, Timeouts, parse_http_url, safe_origin
from .rpc_wire import StarknetRpcError, rpc_error

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = ["JsonRpcClient"]


class JsonRpcClient:
    """Idempotent JSON-RPC calls to one URL, retried on transport errors and 429/5xx.

    ``http`` shares a connection pool (then :meth:`aclose` leaves it open); otherwise one is
    made from ``timeout`` and ``transport``.
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        timeout: Timeouts | float | None = None,
        retries: int = 2,
        http: HttpClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = parse_http_url(rpc_url)
        if url is None:  # the URL itself stays out of the message: it may hold a provider key
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "rpc_url must be an http(s) URL")
        self._url = url.geturl()
        self._origin = safe_origin(self._url)
        self._retries = retries
        self._owns_http = http is None
        self._http = http or HttpClient(timeouts=timeout, transport=transport)
        self._ids = itertools.count(1)

    @property
    def http(self) -> HttpClient:
        return self._http

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(self, method: str, params: Mapping[str, Any] | Sequence[Any]) -> Any:
        """One JSON-RPC call; returns ``result`` or raises :class:`StarknetRpcError`."""
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        response = await self._post(payload, method)
        body = response.json
        if not isinstance(body, Mapping):
            raise self._bad_response(method, "not a JSON-RPC object")
        return self._unwrap(body, method)

    async def batch(
        self, calls: Sequence[tuple[str, Mapping[str, Any] | Sequence[Any]]]
    ) -> list[Any]:
        """A JSON-RPC batch in one HTTP round trip; results in request order.

        Raises the first error in request order (as :class:`StarknetRpcError`).
        """
        out = await self.batch_items(calls)
        for item in out:
            if isinstance(item, StarknetRpcError):
                raise item
        return out

    async def batch_items(
        self, calls: Sequence[tuple[str, Mapping[str, Any] | Sequence[Any]]]
    ) -> list[Any]:
        """Like :meth:`batch`, but each failed item is returned as its StarknetRpcError.

        A failure of the whole request (transport, HTTP status, garbage) still raises.
        """
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        what = f"batch of {len(calls)} {calls[0][0]}"
        response = await self._post(payload, what)
        body = response.json
        if not isinstance(body, list):
            if isinstance(body, Mapping) and "error" in body:
                self._unwrap(body, what)  # raises the node's error
            raise self._bad_response(what, "batch answer is not a list")
        by_id: dict[Any, Mapping[str, Any]] = {}
        for item in body:
            if isinstance(item, Mapping):
                by_id[item.get("id")] = item
        out: list[Any] = []
        for i, (method, _) in zip(ids, calls, strict=True):
            answer = by_id.get(i)
            if answer is None:
                raise self._bad_response(what, f"no answer for id {i}")
            try:
                out.append(self._unwrap(answer, method))
            except StarknetRpcError as exc:
                out.append(exc)
        return out

    async def _post(self, payload: Any, what: str) -> HttpResponse:
        response = await self._http.post_json(
            self._url,
            payload,
            idempotent=True,
            retries=self._retries,
            what=f"RPC {what}",
            redact_path=True,  # provider keys live in RPC URL paths
        )
        if response.ok:
            if response.json is None:
                raise self._bad_response(what, "body is not JSON")
            return response
        # Some nodes answer JSON-RPC errors with an HTTP error status; keep the RPC error.
        if isinstance(response.json, Mapping) and isinstance(response.json.get("error"), Mapping):
            return response
        if response.status in (401, 403):
            raise ChipiSessionError(
                ErrorCode.UNAUTHORIZED,
                f"RPC {what}: {self._origin} refused access (HTTP {response.status}); "
                "check the RPC URL's API key",
            )
        raise ChipiSessionError(
            ErrorCode.BACKEND_UNAVAILABLE,
            f"RPC {what}: {self._origin} answered HTTP {response.status}",
            retryable=response.status >= 500 or response.status in (408, 429),
        )

    def _bad_response(self, what: str, detail: str) -> ChipiSessionError:
        return ChipiSessionError(
            ErrorCode.SESSION_INVALID_RESPONSE, f"RPC {what}: {self._origin} sent {detail}"
        )

    def _unwrap(self, body: Mapping[str, Any], method: str) -> Any:
        error = body.get("error")
        if error is not None:
            if not isinstance(error, Mapping):
                raise self._bad_response(method, "a malformed error")
            raise rpc_error(method, error)
        if "result" not in body:
            raise self._bad_response(method, "neither result nor error")
        return body["result"]
