"""Handler parameters in Litestar's explicit style (inferred kinds stop working in Litestar 3).

Every handler argument says where it comes from: a named dependency, the path, the query, a
header or the JSON body (`JSONBody[...]`). The parameters many controllers share are spelled
once here; plain path and query values use Litestar's `FromPath[...]`/`FromQuery[...]`, and
aliases one module needs (`EnvName`, `AgentSlug`, `AsOf`, ...) live in that module. A
`name=` is given only where the wire name differs from the argument (`from`, headers).
"""

from __future__ import annotations

from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import FromQuery, HeaderParameter, QueryParameter

from domain.authz import Principal
from services.api.context import ApiContext

#: The per-process API state (the `ctx` dependency, `DEPENDENCIES` in routes.py).
Ctx = NamedDependency[ApiContext]
#: The authenticated caller (the `principal` dependency).
Caller = NamedDependency[Principal]

IdemKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        max_length=200,
        description="Same key and body → the first answer again; other body → 422",
    ),
]
MinPosition = Annotated[
    int | None,
    QueryParameter(
        required=False,
        ge=0,
        description="Wait (bounded) until the read models reached this event position",
    ),
]
Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
#: A keyset cursor over store positions (`next_cursor` of the previous page).
Cursor = FromQuery[int | None]
