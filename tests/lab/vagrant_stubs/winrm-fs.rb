# Validation-only stand-in for the `winrm-fs` gem (see winrm.rb in this directory).
module WinRM
  module FS
  end
end
