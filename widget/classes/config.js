// Where the mailsync backend lives. `mailsync widget build` rewrites this file from PUBLIC_URL;
// the sandbox serves its own copy pointing at itself.
define([], function () {
  'use strict';
  return {BACKEND_URL: 'http://127.0.0.1:8000'};
});
