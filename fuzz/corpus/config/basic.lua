return {
  default = "dev",
  providers = {
    dev = { "local", isolation = "none", state_dir = "/tmp/x" },
    box = { "docker", host = env "DOCKER_HOST", image = "alpine:3" },
    far = { "ssh", host = "example.org", port = 22, key = env("SSH_KEY", "~/.ssh/id") },
    plain = "local",
  },
}
