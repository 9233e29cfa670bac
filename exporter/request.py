"""The concrete request of one poll (or one discovered item): a request block with its templates rendered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .config import HttpRequest, Pagination
from .templating import Renderer, compile_tree

__all__ = ["Request", "RequestTemplate"]


@dataclass(frozen=True)
class Request:
    """What the client sends (before the auth object signs it last); pagination works on top of it."""

    url: str
    method: str = "GET"
    params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    pagination: Optional[Pagination] = None


def _text(value: Any) -> Any:
    """A rendered URL, parameter or header is text; a number an expression gave is written out."""
    return value if isinstance(value, str) else str(value)


class RequestTemplate:
    """A request block's templates, compiled once; `render` gives the concrete request for one template context."""

    def __init__(self, spec: HttpRequest) -> None:
        self.spec = spec
        self._url = compile_tree(spec.url)
        self._params = {k: r for k, r in ((k, compile_tree(v)) for k, v in spec.params.items()) if r is not None}
        self._headers = {k: r for k, r in ((k, compile_tree(v)) for k, v in spec.headers.items()) if r is not None}
        self._body: Optional[Renderer] = compile_tree(spec.body)
        self.static = not (self._url or self._params or self._headers or self._body)
        self._fixed = Request(spec.url, spec.method, dict(spec.params), dict(spec.headers), spec.body, spec.pagination)

    def render(self, context: Mapping[str, Any]) -> Request:
        """The request for one poll; raises TemplateFailure if a template cannot be rendered with this context."""
        if self.static:
            return self._fixed
        spec = self.spec
        params = dict(spec.params)
        params.update({k: _text(r(context)) for k, r in self._params.items()})
        headers = dict(spec.headers)
        headers.update({k: _text(r(context)) for k, r in self._headers.items()})
        return Request(
            _text(self._url(context)) if self._url else spec.url,
            spec.method,
            params,
            headers,
            self._body(context) if self._body else spec.body,
            spec.pagination,
        )
