# Release targets, sourced by scripts/release.sh and scripts/cross.sh.
# The agent runs on end-user machines; the servers are Linux-only.
AGENT_TARGETS=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64)
SERVER_TARGETS=(linux/amd64 linux/arm64)
SERVERS=(stund turnd mqttd)
