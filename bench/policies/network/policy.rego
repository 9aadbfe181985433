# CIDR and net builtins: an HTTP tool may reach addresses in the allowed
# networks, never link-local, loopback or the metadata service.
package vedette

import rego.v1

default decision := {"allow": false, "reason": "address not allowed"}

decision := {"allow": true, "reason": sprintf("%s is in %s", [ip, network])} if {
	input.tool == "http.get"
	ip := input.args.ip
	not blocked(ip)
	some network in data.vedette.allowed_networks
	net.cidr_contains(network, ip)
}

blocked(ip) if {
	some network in data.vedette.blocked_networks
	net.cidr_contains(network, ip)
}
