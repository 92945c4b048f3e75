-- Argo CD health check for realm-operator.dev PublishedRealm and Realm (argocd-cm:
-- resource.customizations.health.realm-operator.dev_PublishedRealm / _Realm). Argo CD runs it
-- in gopher-lua (Lua 5.1) with the live object as `obj`. It reads the kstatus conditions the
-- operator writes, in the order kstatus (Flux) reads them, so both tools agree:
--   deleting / not yet observed / generation not observed  -> Progressing  (kstatus InProgress/Terminating)
--   Stalled=True                                          -> Degraded     (kstatus Failed)
--   Reconciling=True                                      -> Progressing  (kstatus InProgress)
--   Ready=True                                            -> Healthy      (kstatus Current)
--   Ready=False reason Suspended                          -> Suspended    (kstatus InProgress)
--   Ready=False/Unknown, or no Ready condition            -> Progressing  (kstatus InProgress)
local hs = {}

local function condition(status, type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator releases its finalizer once the realm is cleaned up"
  return hs
end

local status = obj.status
-- The operator always writes observedGeneration; without it the object was never reconciled
-- (kstatus alone would call such an object Current: no status says nothing is wrong).
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for realm-operator to reconcile this object"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Generation " .. tostring(obj.metadata.generation) .. " is not observed yet (observed " .. tostring(status.observedGeneration) .. ")"
  return hs
end

-- Stalled, then Reconciling, when True: the verdict and the condition's message.
local function whenTrue(type, health)
  local c = condition(status, type)
  if c ~= nil and c.status == "True" then
    return { status = health, message = describe(c, c.reason or type) }
  end
  return nil
end
local verdict = whenTrue("Stalled", "Degraded") or whenTrue("Reconciling", "Progressing")
if verdict ~= nil then
  return verdict
end
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
if ready ~= nil and ready.status == "False" and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready, "Suspended")
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
