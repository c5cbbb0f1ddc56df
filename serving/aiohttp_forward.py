"""The orchestrator's aiohttp REST forwarder (`--rest-impl aiohttp`): an aiohttp low-level server in
front, an aiohttp `ClientSession` with a kept-alive connection pool behind. Same behaviour as
`serving.lib_rest_forward.HttptoolsForwarder` (see its docstring): path rewrite, status, Content-Type
and body passed back, the marker header on every answer, the injected delay held on the way back,
503 / 504 / 404 / 413 for an unreachable upstream, a timeout, a bad path, a body over the limit.
"""

from __future__ import annotations

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from serving.rest_common import MAX_BODY, PathRewrite, error_body
from serving.runtime import hold


class AiohttpForwarder:
    """An aiohttp request handler (`handler`, for `runtime.start_rest`) forwarding through an aiohttp
    client session (kept-alive connections); `close()` closes the session."""

    def __init__(
        self,
        upstream: str,
        rewrite: PathRewrite,
        marker: tuple[str, str],
        delay_s: float = 0.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.base = f"http://{upstream}"
        self.upstream = upstream
        self.rewrite = rewrite
        self.marker = {marker[0]: marker[1]}
        self.delay_s = delay_s
        self.timeout = ClientTimeout(total=timeout_s)
        self.timeout_s = timeout_s
        self._session: ClientSession | None = None

    def _error(self, status: int, message: str) -> web.Response:
        return web.Response(
            status=status,
            body=error_body(message),
            headers={"Content-Type": "application/json", **self.marker},
        )

    async def handler(self, request: web.BaseRequest) -> web.StreamResponse:
        upstream_path = self.rewrite(request.raw_path)
        if upstream_path is None:
            return self._error(404, f"Malformed request: {request.method} {request.raw_path}")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._error(413, f"request body of {request.content_length} bytes is over the limit")
        body = await request.content.read()  # not request.read(): its 1 MiB client_max_size
        if self._session is None:
            self._session = ClientSession(
                connector=TCPConnector(limit=0, force_close=False),
                timeout=self.timeout,
                auto_decompress=False,
            )
        headers = {}
        if "Content-Type" in request.headers:
            headers["Content-Type"] = request.headers["Content-Type"]
        try:
            async with self._session.request(
                request.method, self.base + upstream_path, data=body or None, headers=headers
            ) as up:
                answer = await up.read()
                ctype = up.headers.get("Content-Type", "application/json")
                status, reason = up.status, up.reason
        except TimeoutError:
            return self._error(504, f"upstream did not answer within {self.timeout_s:g} s")
        except (ClientError, OSError) as exc:
            return self._error(503, f"upstream {self.upstream} unavailable: {type(exc).__name__}: {exc}")
        await hold(self.delay_s)  # the injected delay: the model's answer held on its way back
        return web.Response(
            status=status, reason=reason, body=answer, headers={"Content-Type": ctype, **self.marker}
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
