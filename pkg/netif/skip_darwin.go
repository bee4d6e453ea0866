package netif

// defaultSkip: macOS's loopback, tunnels (utun: VPNs, iCloud Private Relay;
// gif, stf), Apple Wireless Direct Link (awdl, llw), the internal anpi
// links, Wi-Fi access-point mode (ap) and Thunderbolt bridges, plus the
// container and VM bridges Docker Desktop and friends add.
const defaultSkip = `^(lo\d*|utun\d+|gif\d+|stf\d+|awdl\d+|llw\d+|anpi\d+|ap\d+|bridge\d+|docker\d*|vmenet\d+|vnet.*)$`
