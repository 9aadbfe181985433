wrk.method = "POST"
wrk.body = "{\"tool\": \"echo\", \"args\": {\"text\": \"hello\"}}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
