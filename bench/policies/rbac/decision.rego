# vedette's entry point over the RBAC example: the same allow, as a decision.
package vedette

decision := {"allow": data.rbac.allow, "reason": "rbac"}
