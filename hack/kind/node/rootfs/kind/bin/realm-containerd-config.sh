#!/bin/bash
# Where this node lacks CAP_SYS_RESOURCE (bit 24) in its bounding set, containerd cannot set a pod
# sandbox's oom_score_adj below its own; restrict_oom_score_adj makes it clamp instead of failing.
set -euo pipefail
bnd="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
if (( ((16#$bnd >> 24) & 1) == 0 )); then
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
  echo "realm-operator: no CAP_SYS_RESOURCE; containerd restrict_oom_score_adj = true"
fi
