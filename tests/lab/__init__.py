"""Lab tests: real sshd hosts, the WinRM stand-in, ansible-playbook runs, restic, PostgreSQL."""
