# Validation-only stand-in for the `winrm-elevated` gem (see winrm.rb in this directory).
module WinRM
  module Shells
  end
end
