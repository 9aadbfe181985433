# Glob and regex on paths: a file tool allowed under data folders by glob,
# refused for traversal and secret-looking names by regex.
package vedette

import rego.v1

default decision := {"allow": false, "reason": "path not allowed"}

decision := {"allow": true, "reason": "path allowed"} if {
	input.tool == "fs.read"
	path := input.args.path
	not regex.match(`(^|/)\.\.(/|$)`, path)
	not secret_name(path)
	some pattern in data.vedette.allowed
	glob.match(pattern, ["/"], path)
	not denied(path)
}

secret_name(path) if regex.match(`(?i)(\.pem|\.key|id_rsa|\.env|passw(or)?d)`, path)

denied(path) if {
	some pattern in data.vedette.denied
	glob.match(pattern, ["/"], path)
}
