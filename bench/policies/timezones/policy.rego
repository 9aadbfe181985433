# Named time zones: a call is allowed when the caller's site is open at the
# request's time in the site's own zone; every site's opening is worked out
# (100 sites in 25 zones, two zone lookups each).
package vedette

import rego.v1

default decision := {"allow": false, "reason": "site closed"}

request_ns := time.parse_rfc3339_ns(input.time)

open_sites contains site.name if {
	some site in data.vedette.sites
	[hour, _, _] := time.clock([request_ns, site.zone])
	hour >= site.opens
	hour < site.closes
	time.weekday([request_ns, site.zone]) in site.days
}

decision := {"allow": true, "reason": sprintf("site %s is open", [site])} if {
	site := data.vedette.callers[input.caller.id]
	site in open_sites
}
