# Comprehensions over a 1,000-element data set: which assets the caller owns,
# which carry the tag asked for, and whether every one asked for is allowed.
package vedette

import rego.v1

default decision := {"allow": false, "reason": "not every asset is the caller's"}

owned := {asset.id | some asset in data.vedette.assets; asset.owner == input.caller.id}

tagged := {asset.id |
	some asset in data.vedette.assets
	input.args.tag in asset.tags
	asset.sensitivity <= data.vedette.max_sensitivity
}

decision := {"allow": true, "reason": sprintf("%d of %d tagged assets are the caller's", [
	count(owned & tagged),
	count(tagged),
])} if {
	input.tool == "assets.export"
	count(input.args.ids) > 0
	every id in input.args.ids {
		id in owned
		id in tagged
	}
}
