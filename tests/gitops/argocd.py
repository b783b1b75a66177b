"""Argo CD's health assessment of a ProxmoxVM, run the way Argo CD runs it.

``lua_health`` evaluates ``manifests/argocd/health.lua`` as Argo CD's Lua VM does
(argo-cd ``util/lua/lua.go``): a Lua 5.1 state whose standard libraries are skipped, the
object converted from its JSON form into Lua tables and set as the global ``obj``, the
chunk's return value read as ``{status, message}``, and an unknown status turned into
``Unknown``. Argo CD then opens the base, package, table and a reduced os library; the
sandbox here is stricter still and offers only the base library's pure functions, so a
script that passes here also runs where fewer libraries are open.

``argocd_health`` adds the check Argo CD makes before any custom script
(``gitops-engine pkg/health/health.go``): an object with a deletionTimestamp is
Progressing, "Pending deletion".

Run as a module, this file regenerates ``manifests/argocd/argocd-cm-patch.yaml`` from the
script: ``.venv/bin/python -m tests.gitops.argocd``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lupa.lua51

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "manifests" / "argocd" / "health.lua"
CM_PATCH = ROOT / "manifests" / "argocd" / "argocd-cm-patch.yaml"
CM_KEY = "resource.customizations.health.proxmox.vmop.dev_ProxmoxVM"
REGENERATE = ".venv/bin/python -m tests.gitops.argocd"

# Argo CD's health statuses; any other status from a script becomes Unknown.
STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
INVALID_STATUS = "Lua returned an invalid health status"

# The base library without what loads code or touches files (dofile, loadfile, load,
# loadstring, require, module) and without the debugging helpers.
SANDBOX_GLOBALS = (
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "_VERSION",
)

# Runs one script in a fresh environment holding only SANDBOX_GLOBALS and obj. Strings
# lose their methods for the run: without the string library ("x"):upper() finds none.
# With a ``lines`` table, the script's executed line numbers are recorded in it (a line
# hook set from outside the sandbox).
_RUNNER = """
local loadstring, setfenv, getmetatable, pcall, error, ipairs, G =
  loadstring, setfenv, getmetatable, pcall, error, ipairs, _G
local sethook, getinfo = debug.sethook, debug.getinfo
return function(source, names, obj, lines)
  local env = {}
  for _, name in ipairs(names) do
    env[name] = G[name]
  end
  env._G = env
  env.obj = obj
  local chunk, problem = loadstring(source, "=health.lua")
  if chunk == nil then
    error(problem, 0)
  end
  setfenv(chunk, env)
  local strings = getmetatable("")
  local methods = strings.__index
  strings.__index = nil
  if lines ~= nil then
    sethook(function(_, line)
      if getinfo(2, "S").source == "=health.lua" then
        lines[line] = true
      end
    end, "l")
  end
  local ok, result = pcall(chunk)
  if lines ~= nil then
    sethook()
  end
  strings.__index = methods
  if not ok then
    error(result, 0)
  end
  return result
end
"""


_LUA_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", type(None): "nil"}


class LuaHealthError(Exception):
    """The script failed or returned something Argo CD cannot read (Argo CD shows Unknown)."""


@functools.cache
def _runtime() -> tuple[lupa.lua51.LuaRuntime, Any, Any]:
    lua = lupa.lua51.LuaRuntime(register_eval=False, register_builtins=False)
    runner = lua.execute(_RUNNER)
    names = lua.table(*SANDBOX_GLOBALS)
    return lua, runner, names


def _to_lua(lua: lupa.lua51.LuaRuntime, value: Any) -> Any:
    """Argo CD's decodeValue: maps and lists become tables and null is nil, so a null map
    value is an absent key and a null list item is skipped (gopher-lua's Append drops nil;
    the items after it move up)."""
    if isinstance(value, Mapping):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[str(key)] = _to_lua(lua, item)
        return table
    if isinstance(value, list | tuple):
        table = lua.table()
        items = [item for item in value if item is not None]
        for index, item in enumerate(items, start=1):
            table[index] = _to_lua(lua, item)
        return table
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    raise TypeError(f"not a JSON value: {value!r}")


def health_script() -> str:
    return HEALTH_LUA.read_text(encoding="utf-8")


def lua_health(obj: Any, script: str | None = None) -> tuple[str, str]:
    """(status, message) as the health script returns it to Argo CD."""
    return _evaluate(obj, script, None)


def lua_health_lines(obj: Any, script: str | None = None) -> set[int]:
    """The line numbers of the script that run for the object."""
    lua, _, _ = _runtime()
    lines = lua.table()
    _evaluate(obj, script, lines)
    return {int(number) for number in lines}


def _evaluate(obj: Any, script: str | None, lines: Any) -> tuple[str, str]:
    lua, runner, names = _runtime()
    source = health_script() if script is None else script
    try:
        result = runner(source, names, _to_lua(lua, obj), lines)
    except lupa.lua51.LuaError as exc:
        raise LuaHealthError(str(exc)) from exc
    kind = lupa.lua51.lua_type(result) or _LUA_TYPES.get(type(result), type(result).__name__)
    if kind != "table":
        raise LuaHealthError(f"expect table output from Lua script, not {kind}")
    if next(iter(result.keys()), None) is None:
        # gopher-json encodes an empty table as [], which is no health status object.
        raise LuaHealthError("cannot unmarshal array into Go value of type health.HealthStatus")
    status, message = result["status"], result["message"]
    if status is not None and not isinstance(status, str):
        raise LuaHealthError(f"status is not a string: {status!r}")
    if message is not None and not isinstance(message, str):
        raise LuaHealthError(f"message is not a string: {message!r}")
    if status not in STATUSES:
        return "Unknown", INVALID_STATUS
    return status, message or ""


def argocd_health(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD shows it for the object."""
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("deletionTimestamp"):
        return "Progressing", "Pending deletion"
    return lua_health(obj)


def render_cm_patch(script: str | None = None) -> str:
    """The argocd-cm patch carrying the script, byte for byte, as a YAML block scalar."""
    source = health_script() if script is None else script
    assert source.endswith("\n") and not source.endswith("\n\n"), "one final newline"
    body = "".join(f"    {line}".rstrip() + "\n" for line in source.splitlines())
    return (
        "# Adds the ProxmoxVM health check to Argo CD's argocd-cm ConfigMap. Generated from\n"
        f"# health.lua by `{REGENERATE}`: edit health.lua, then regenerate.\n"
        "#   kubectl -n argocd patch configmap argocd-cm --type merge \\\n"
        "#     --patch-file manifests/argocd/argocd-cm-patch.yaml\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  {CM_KEY}: |\n"
        f"{body}"
    )


def main() -> int:
    CM_PATCH.write_text(render_cm_patch(), encoding="utf-8")
    print(f"wrote {CM_PATCH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
