# String builtins: names normalised, split and compared, the reason built
# with sprintf, as a policy on commands and their arguments does.
package vedette

import rego.v1

default decision := {"allow": false, "reason": "command not allowed"}

command := lower(trim_space(input.args.command))

words := split(command, " ")

decision := {"allow": true, "reason": reason} if {
	input.tool == "shell.run"
	some prefix in data.vedette.allowed_prefixes
	startswith(command, prefix)
	not forbidden
	count(words) <= data.vedette.max_words
	reason := sprintf("%s (%d words) starts with '%s' for %s", [
		concat("-", words),
		count(words),
		prefix,
		upper(input.caller.id),
	])
}

forbidden if {
	some word in words
	some bad in data.vedette.forbidden_words
	contains(word, bad)
}
