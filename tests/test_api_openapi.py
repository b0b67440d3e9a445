"""The admin REST API (/api/v1), end to end over HTTP. The OpenAPI document lists every admin
route."""

from __future__ import annotations

from tests.api_helpers import (
    API,
    Api,
)


async def test_openapi_lists_every_admin_route(api: Api) -> None:
    r = await api.http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    expected = {
        f"{API}/pools": {"get", "post"},
        f"{API}/pools/{{pool_id}}": {"get", "patch", "delete"},
        f"{API}/pools/{{pool_id}}/pause": {"post"},
        f"{API}/pools/{{pool_id}}/resume": {"post"},
        f"{API}/pools/{{pool_id}}/qr.{{fmt}}": {"get"},
        f"{API}/pools/{{pool_id}}/groups": {"get", "post"},
        f"{API}/pools/{{pool_id}}/groups/reorder": {"post"},
        f"{API}/pools/{{pool_id}}/groups/upload": {"post"},
        f"{API}/pools/{{pool_id}}/groups/{{group_id}}": {"patch", "delete"},
        f"{API}/pools/{{pool_id}}/groups/{{group_id}}/reset": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, (path, sorted(paths))
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    upload = paths[f"{API}/pools/{{pool_id}}/groups/upload"]["post"]["requestBody"]
    assert "multipart/form-data" in upload["content"]
    schemes = r.json()["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
