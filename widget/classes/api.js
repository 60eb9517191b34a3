// The mailsync backend's widget API (docs/ARCHITECTURE.md §3). Every call goes through Kommo's
// $authorizedAjax, which adds the X-Auth-Token JWT the backend verifies. Calls answer native
// Promises; failures reject with an Error whose message is already in plain words.
define(['jquery'], function ($) {
  'use strict';

  // Error codes whose wording we translate; any other code keeps the backend's own message,
  // which is specific (e.g. which mapping rule is wrong).
  var TRANSLATED = ['invalid_token', 'account_not_found', 'forbidden', 'needs_reauth',
    'provider_not_connected', 'rate_limited', 'upstream_unavailable'];

  function Api(widget, baseUrl, ui) {
    this.widget = widget;
    this.base = String(baseUrl || '').replace(/\/+$/, '');
    this.ui = ui;
  }

  Api.prototype.failure = function (xhr) {
    var status = (xhr && xhr.status) || 0;
    var body = xhr && xhr.responseJSON;
    if (!body && xhr && xhr.responseText) {
      try {
        body = JSON.parse(xhr.responseText);
      } catch (ignored) {
        body = null;
      }
    }
    var error = (body && body.error) || {};
    var text;
    if (status === 0) {
      text = this.ui.t('errors.network');
    } else if (error.code && TRANSLATED.indexOf(error.code) >= 0) {
      text = this.ui.t('errors.' + error.code);
    } else {
      text = error.message || this.ui.t('errors.unknown', {status: status});
    }
    var failure = new Error(text);
    failure.status = status;
    failure.code = error.code || (status === 0 ? 'network' : 'unknown');
    failure.serverMessage = error.message || '';
    return failure;
  };

  Api.prototype.request = function (method, path, body) {
    var self = this;
    var options = {url: this.base + path, type: method, method: method, dataType: 'json',
      cache: false};
    if (body !== undefined) {
      options.contentType = 'application/json';
      options.data = JSON.stringify(body);
    }
    return new Promise(function (resolve, reject) {
      $.when(self.widget.$authorizedAjax(options)).then(
        function (data) { resolve(data === undefined ? null : data); },
        function (xhr) { reject(self.failure(xhr)); });
    });
  };

  Api.prototype.account = function () { return this.request('GET', '/api/widget/account'); };
  Api.prototype.pipelines = function () { return this.request('GET', '/api/widget/pipelines'); };
  Api.prototype.contactFields = function () { return this.request('GET', '/api/widget/contact-fields'); };
  Api.prototype.lists = function () { return this.request('GET', '/api/widget/provider/lists'); };
  Api.prototype.segments = function () { return this.request('GET', '/api/widget/provider/segments'); };
  Api.prototype.disconnect = function () { return this.request('DELETE', '/api/widget/provider'); };
  Api.prototype.resync = function (target) { return this.request('POST', '/api/widget/resync', target); };

  // {kind, api_key?, list_id?}: without api_key the backend reuses the stored key of that kind.
  Api.prototype.connect = function (body) {
    return this.request('PUT', '/api/widget/provider', body);
  };

  Api.prototype.createSegment = function (name) {
    return this.request('POST', '/api/widget/provider/segments', {name: name});
  };

  Api.prototype.saveMapping = function (rules, options) {
    return this.request('PUT', '/api/widget/mapping', {rules: rules, options: options});
  };

  // The sync of existing leads: {dry_run, new_subscribers_as} → {backfill_id}; 409
  // backfill_running while one runs. backfill() reads the newest run's progress and counts.
  Api.prototype.startBackfill = function (body) {
    return this.request('POST', '/api/widget/backfill', body);
  };

  Api.prototype.backfill = function () { return this.request('GET', '/api/widget/backfill'); };

  Api.prototype.activity = function (limit) {
    return this.request('GET', '/api/widget/activity?limit=' + (limit || 20));
  };

  // null when mailsync has never synced this contact (404 contact_not_found).
  Api.prototype.contact = function (contactId) {
    return this.request('GET', '/api/widget/contacts/' + encodeURIComponent(contactId))
      .catch(function (failure) {
        if (failure.code === 'contact_not_found') {
          return null;
        }
        throw failure;
      });
  };

  return Api;
});
