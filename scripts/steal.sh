# Sourced by the bench scripts: how much CPU time the hypervisor gave to
# others while a run went on (steal, from /proc/stat). On a shared VM a busy
# neighbour slows rounds of both servers, not always alike; a run with a
# few percent of steal or more reads noisier than one with none.

# steal_mark: "steal total" clock ticks of all CPUs so far.
steal_mark() { awk '/^cpu /{t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t}' /proc/stat; }

# steal_since MARK: the share of CPU time stolen since MARK, e.g. "2.4 %".
steal_since() {
  local s0 t0 s1 t1
  read -r s0 t0 <<<"$1"
  read -r s1 t1 < <(steal_mark)
  awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.1f %%", (t > 0) ? 100 * s / t : 0 }'
}
