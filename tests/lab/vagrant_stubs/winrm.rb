# Validation-only stand-in for the `winrm` gem, which Debian's vagrant package does not ship.
# `vagrant validate` loads Vagrant's WinRM communicator, which needs these names to exist and nothing
# more. tests/test_vagrant.py puts this directory on RUBYLIB for `vagrant validate` only: never for
# `vagrant up`, which needs the real gems (vagrant plugin install winrm winrm-fs winrm-elevated).
module WinRM
  class WinRMError < StandardError; end
  class WinRMHTTPTransportError < WinRMError; end
  class WinRMAuthorizationError < WinRMError; end
  class WinRMWSManFault < WinRMError; end
end

unless defined?(HTTPClient)
  class HTTPClient
    class KeepAliveDisconnected < StandardError; end
    class TimeoutError < StandardError; end
  end
end
