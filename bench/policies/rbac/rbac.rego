# OPA's RBAC example policy from its policy-performance documentation
# ("Example Policy"), in Rego v1 syntax. The example input it shows is passed
# as the input document instead of being defined in the module.
package rbac

bindings := [
	{"user": "alice", "roles": ["dev", "test"]},
	{"user": "bob", "roles": ["test"]},
]

roles := [
	{
		"name": "dev",
		"permissions": [
			{"resource": "foo123", "action": "write"},
			{"resource": "foo123", "action": "read"},
		],
	},
	{
		"name": "test",
		"permissions": [{"resource": "foo123", "action": "read"}],
	},
]

default allow := false

allow if {
	some role_name
	user_has_role[role_name]
	role_has_permission[role_name]
}

user_has_role contains role_name if {
	binding := bindings[_]
	binding.user == input.subject
	role_name := binding.roles[_]
}

role_has_permission contains role_name if {
	role := roles[_]
	role_name := role.name
	perm := role.permissions[_]
	perm.resource == input.resource
	perm.action == input.action
}
