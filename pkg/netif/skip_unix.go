//go:build !darwin && !windows

package netif

// defaultSkip: Linux's loopback, container, VM and CNI devices.
const defaultSkip = `^(lo|docker\d*|br-.*|veth.*|virbr.*|vnet.*|cni.*|flannel.*|cali.*|kube.*|dummy.*)$`
