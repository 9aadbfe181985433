# Policy of the example agent.
#
# - echo is allowed;
# - fs.read is allowed only for a path under the data folder named in
#   data.vedette.example.data_root, and denied elsewhere with a reason naming
#   the path;
# - every other tool is denied, and so is any tool the agent does not declare.
#
# input.claims is untrusted (the caller says whatever it likes): no rule here
# reads it, so no claim can turn a deny into an allow.
package vedette

default decision := {"allow": false, "reason": "no rule allows this tool call"}

decision := {"allow": false, "reason": sprintf("tool %q is not declared by the agent", [input.tool])} if {
	not declared
}

decision := {"allow": true, "reason": "echo is always allowed"} if {
	declared
	input.tool == "echo"
}

decision := {"allow": true, "reason": sprintf("fs.read of %q is under %s", [input.args.path, data_root])} if {
	declared
	input.tool == "fs.read"
	read_allowed
}

decision := {"allow": false, "reason": sprintf("fs.read of %v is outside %s", [path_shown, data_root])} if {
	declared
	input.tool == "fs.read"
	not read_allowed
}

data_root := data.vedette.example.data_root

declared if input.tool in input.agent.tools

read_allowed if {
	is_string(input.args.path)
	startswith(input.args.path, concat("", [data_root, "/"]))
	not climbs_out(input.args.path)
}

# "/data/../b" and "/data/./b" could name a file outside the folder once
# resolved; empty segments ("/data//b") are refused too, so a path has one spelling.
climbs_out(path) if {
	some segment in split(trim_prefix(path, "/"), "/")
	segment in {"", ".", ".."}
}

path_shown := sprintf("%q", [input.args.path]) if {
	is_string(input.args.path)
} else := "a missing or non-string path"
