-- Argo CD health check for proxmox.vmop.dev/ProxmoxVM.
--
-- argocd-cm key: resource.customizations.health.proxmox.vmop.dev_ProxmoxVM
-- (argocd-cm-patch.yaml next to this file carries it; docs/gitops.md explains the mapping).
--
-- Argo CD runs custom health checks without Lua's standard libraries unless
-- resource.customizations.useOpenLibs.<group>_<kind> is set, so this script uses nothing
-- but the base functions type, ipairs, tostring and tonumber, and no string methods. It is
-- Lua 5.1 (Argo CD's interpreter), and it never raises: any shape of input gives a status.
--
-- Argo CD reports every object that has a deletionTimestamp as Progressing "Pending
-- deletion" before it runs this script; the deletion branch below serves other readers.

local function field(t, key)
  if type(t) ~= "table" then
    return nil
  end
  return t[key]
end

local function text(value)
  local kind = type(value)
  if kind == "string" then
    return value
  end
  if kind == "number" or kind == "boolean" then
    return tostring(value)
  end
  return ""
end

local function number(value)
  if type(value) == "number" then
    return value
  end
  if type(value) == "string" then
    return tonumber(value)
  end
  return nil
end

-- The condition of that type, or nil; anything that is not a list of tables holds none.
local function condition(conditions, kind)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return field(c, "status") == "True"
end

-- "Reason: message", or whichever of the two is there, or the fallback.
local function describe(c, fallback)
  local reason = text(field(c, "reason"))
  local message = text(field(c, "message"))
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  if reason ~= "" then
    return reason
  end
  return fallback
end

local function health()
  local metadata = field(obj, "metadata")
  local spec = field(obj, "spec")
  local status = field(obj, "status")
  local conditions = field(status, "conditions")

  -- Being deleted: the finalizer destroys the VM; only a stalled destroy needs a human.
  if field(metadata, "deletionTimestamp") ~= nil then
    local stalled = condition(conditions, "DeletionStalled")
    if is_true(stalled) then
      return { status = "Degraded", message = "Deletion stalled: " .. describe(stalled, "no detail") }
    end
    local deleting = condition(conditions, "Deleting")
    return {
      status = "Progressing",
      message = "Deleting: " .. describe(deleting, "waiting for the operator to start the destroy"),
    }
  end

  -- The operator sets Ready on its first look at an object; without it nothing was reported.
  local ready = condition(conditions, "Ready")
  if ready == nil then
    return { status = "Progressing", message = "Waiting for the operator to report status" }
  end

  -- A status written for an older spec says nothing about the current one.
  local generation = number(field(metadata, "generation"))
  local observed = number(field(status, "observedGeneration"))
  if generation ~= nil and observed ~= nil and observed ~= generation then
    return {
      status = "Progressing",
      message = "Waiting for the operator to observe generation " .. tostring(generation)
        .. " (status is for generation " .. tostring(observed) .. ")",
    }
  end

  -- Stalled: nothing moves without a human. A VM paused in Proxmox waits for a resume.
  local stalled = condition(conditions, "Stalled")
  if is_true(stalled) then
    if field(stalled, "reason") == "VMPaused" or field(ready, "reason") == "VMPaused" then
      return { status = "Suspended", message = describe(stalled, "VM is paused") }
    end
    return { status = "Degraded", message = describe(stalled, "Stalled") }
  end

  local reconciling = condition(conditions, "Reconciling")
  if is_true(reconciling) then
    return { status = "Progressing", message = describe(reconciling, describe(ready, "Reconciling")) }
  end

  if is_true(ready) then
    local message = text(field(ready, "message"))
    if message == "" then
      message = "Ready"
    end
    if field(spec, "powerState") == "Stopped" then
      message = message .. " (powered off, as spec.powerState asks)"
    end
    return { status = "Healthy", message = message }
  end

  return { status = "Progressing", message = describe(ready, "Waiting for the VM to become ready") }
end

return health()
