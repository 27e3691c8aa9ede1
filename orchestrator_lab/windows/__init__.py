"""A protocol-faithful Windows stand-in for the local lab: WS-Management/WinRS over HTTP.

No Windows can run on the lab machine, yet triage, collection and validation must be exercised through
the same client code that talks to real Windows hosts (pywinrm, Ansible's winrm connection). So this
package fakes only the far end, and fakes it at the wire level:

- HTTP POST /wsman with SOAP envelopes (WS-Transfer Create/Delete, WinRS Command/Send/Receive/Signal),
  WS-Management faults, MaxEnvelopeSize-bounded Receive chunks, OperationTimeout faults;
- authentication as Windows does it: 401 with `WWW-Authenticate: Negotiate` and `Basic realm="WSMAN"`,
  Basic, and NTLM (raw or SPNEGO-wrapped) through pyspnego's acceptor, one authenticated context per
  TCP connection; MS-WSMV `multipart/encrypted` session-sealed messages
  (`application/HTTP-SPNEGO-session-encrypted`) after NTLM.

What it does NOT do is run PowerShell. Commands are answered from the host's scenario state (a JSON
file: files, registry, services, event log, shadow copies, scheduled tasks) by a small interpreter that
knows the handful of commands the orchestrator and its raw-task playbooks send, the triage probe
protocol (`# orchestrator-probes:` header) from the lab contract, and Ansible's exec wrapper: the
Windows modules the stage playbooks use and the winrm connection's fetch/put are emulated from the
state (`modules/`, whose docstring lists them). Only real Windows (the Vagrant lab) can confirm: real
PowerShell semantics (pipelines, objects, error records, non-terminating errors), the modules' own code,
the real registry, event log, VSS and scheduler, Kerberos, CredSSP, HTTPS listeners and their
certificates, and WinRM's quotas and service configuration.
"""
