# Deep inputs: a document nested seven levels deep, every paragraph at the
# bottom checked for secret-looking text, as a policy on nested tool
# arguments does: one regex.match for each of 256 paragraphs.
package vedette

import rego.v1

default decision := {"allow": false, "reason": "a value looks like a secret"}

paragraphs := [text |
	some a, b, c, d, e, f, i
	text := input.args.document[a][b][c][d][e][f][i]
	is_string(text)
]

secret_like contains text if {
	some text in paragraphs
	regex.match(`(?i)(AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY)`, text)
}

decision := {"allow": true, "reason": sprintf("%d paragraphs checked", [count(paragraphs)])} if {
	input.tool == "doc.write"
	count(paragraphs) > 0
	count(secret_like) == 0
}
