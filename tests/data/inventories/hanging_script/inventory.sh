#!/bin/sh
# A dynamic inventory script that never answers (a CMDB API that hangs).
sleep 600
