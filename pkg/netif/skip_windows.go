package netif

// defaultSkip: Windows adapter names (their friendly names) for Hyper-V and
// WSL virtual switches, tunnel pseudo-interfaces and the loopback one.
const defaultSkip = `^(vEthernet \(.*\)|Loopback Pseudo-Interface.*|isatap\..*|Teredo Tunneling Pseudo-Interface|Bluetooth Network Connection.*)$`
