// Steps 1 and 2 of the settings modal: the email platform with its API key (checked live by the
// backend, masked once saved) and, for Mailchimp, the audience.
define(['jquery'], function ($) {
  'use strict';

  var MAILCHIMP_KEY = /-[a-z]{2,4}\d+$/;

  function ProviderStep(ui, api, onConnected) {
    this.ui = ui;
    this.api = api;
    this.onConnected = onConnected;
    this.account = null;
    this.segments = [];
    this.lists = [];
    this.$el = $('<div class="mailsync__provider">');
    this.$audience = $('<section class="mailsync__section" data-ms-section="audience">');
    this.bind();
  }

  ProviderStep.prototype.provider = function () {
    return (this.account && this.account.provider) || null;
  };

  // Segments and audiences of the connected platform; a failure leaves them empty and says why.
  ProviderStep.prototype.load = function (account) {
    var self = this;
    var provider = account.provider;
    this.account = account;
    // Mailchimp tags live in an audience: none to read until one is chosen.
    var tagged = provider && !(provider.kind === 'mailchimp' && !provider.list_id);
    var segments = tagged ? this.api.segments() : Promise.resolve([]);
    var lists = provider && provider.kind === 'mailchimp' ? this.api.lists() : Promise.resolve([]);
    return Promise.all([segments, lists]).then(function (loaded) {
      self.segments = loaded[0] || [];
      self.lists = loaded[1] || [];
      self.loadError = '';
    }, function (failure) {
      self.segments = [];
      self.lists = [];
      self.loadError = failure.message;
    }).then(function () {
      self.render();
    });
  };

  ProviderStep.prototype.render = function () {
    var ui = this.ui;
    var provider = this.provider();
    var kind = this.chosenKind || (provider ? provider.kind : 'mailerlite');
    var saved = provider && provider.kind === kind;
    this.$el.empty().append(
      $('<div class="mailsync__field">').append(
        $('<div class="mailsync__label">').text(ui.t('provider.kind')),
        $('<div class="mailsync__value">').append(ui.select('ms_provider_kind', [
          {id: 'mailerlite', option: 'MailerLite'}, {id: 'mailchimp', option: 'Mailchimp'}], kind, 'provider-kind'))),
      $('<div class="mailsync__field">').append(
        $('<div class="mailsync__label">').text(ui.t('provider.api_key')),
        $('<div class="mailsync__value">').append(
          ui.input('ms_api_key', '', ui.t(saved ? 'provider.key_saved' : 'provider.key_placeholder'),
            'api-key', 'password'),
          $('<p class="mailsync__hint" data-ms="provider-where">').text(ui.t('provider.where_' + kind)))),
      $('<div class="mailsync__toolbar">').append(
        ui.button('ms_connect', ui.t('provider.connect'), 'connect'),
        provider ? ui.button('ms_disconnect', ui.t('provider.disconnect'), 'disconnect', 'mailsync__button_plain') : null),
      $('<p data-ms="provider-status">'),
      $('<p class="mailsync__note_error" data-ms="provider-error">'));
    this.showStatus();
    this.renderAudience();
  };

  ProviderStep.prototype.showStatus = function () {
    var provider = this.provider();
    var $status = this.$el.find('[data-ms="provider-status"]');
    if (provider && provider.status !== 'key_rejected') {
      this.ui.say($status, 'ok', this.ui.t('provider.connected', {label: provider.label}));
    } else {
      this.ui.say($status, 'info', provider ? '' : this.ui.t('provider.not_connected'));
    }
    this.ui.say(this.$el.find('[data-ms="provider-error"]'), 'error', this.loadError || '');
  };

  ProviderStep.prototype.renderAudience = function () {
    var ui = this.ui;
    var provider = this.provider();
    this.$audience.empty().toggle(!!provider && provider.kind === 'mailchimp');
    if (!provider || provider.kind !== 'mailchimp') {
      return;
    }
    this.$audience.append($('<h3 class="mailsync__title">').text(ui.t('audience.title')),
      $('<p class="mailsync__hint">').text(ui.t('audience.hint')));
    if (!this.lists.length) {
      this.$audience.append($('<p class="mailsync__note_info">').text(ui.t('audience.empty')));
      return;
    }
    var items = [{id: '', option: ui.t('audience.choose')}].concat(this.lists.map(function (list) {
      return {id: list.id, option: ui.t(list.member_count === 1 ? 'audience.members_one' : 'audience.members',
        {name: list.name, count: list.member_count})};
    }));
    this.$audience.append(ui.select('ms_audience', items, provider.list_id, 'audience'),
      $('<p data-ms="audience-status">'));
  };

  ProviderStep.prototype.bind = function () {
    var self = this;
    this.$el.on('change', '[data-ms="provider-kind"]', function () {
      self.chosenKind = $(this).val();
      self.render();
    });
    this.$el.on('click', '[data-ms="connect"]', function (e) {
      e.preventDefault();
      self.connect();
    });
    this.$el.on('click', '[data-ms="disconnect"]', function (e) {
      e.preventDefault();
      self.submit(self.api.disconnect(), 'provider-status', 'provider.disconnected');
    });
    this.$audience.on('change', '[data-ms="audience"]', function () {
      var listId = $(this).val();
      if (listId) {
        self.submit(self.api.connect({kind: 'mailchimp', list_id: listId}), 'audience-status', 'audience.saved');
      }
    });
  };

  // Checked here first only where the shape alone tells the admin what is wrong.
  ProviderStep.prototype.connect = function () {
    var ui = this.ui;
    var kind = this.$el.find('[data-ms="provider-kind"]').val() || 'mailerlite';
    var key = String(this.$el.find('[data-ms="api-key"]').val() || '').trim();
    var provider = this.provider();
    var $error = this.$el.find('[data-ms="provider-error"]');
    var problem = !key && !(provider && provider.kind === kind) ? 'provider.key_required'
      : key && kind === 'mailchimp' && !MAILCHIMP_KEY.test(key) ? 'provider.mailchimp_shape' : null;
    if (problem) {
      ui.say($error, 'error', ui.t(problem));
      return;
    }
    var body = {kind: kind};
    if (key) {
      body.api_key = key;
    }
    var $button = this.$el.find('[data-ms="connect"]').prop('disabled', true);
    ui.say(this.$el.find('[data-ms="provider-status"]'), 'info', ui.t('provider.checking'));
    ui.say($error, 'error', '');
    this.submit(this.api.connect(body), 'provider-error', null, kind).then(function () {
      $button.prop('disabled', false);
    });
  };

  ProviderStep.prototype.find = function (hook) {
    return this.$el.add(this.$audience).find('[data-ms="' + hook + '"]');
  };

  // Sends a provider change; `where` names the hook that shows the outcome (after re-render).
  ProviderStep.prototype.submit = function (request, where, doneText, kind) {
    var self = this;
    var ui = this.ui;
    return request.then(function (account) {
      self.chosenKind = null;
      return self.load(account).then(function () {
        self.onConnected(account);
        if (doneText) {
          ui.say(self.find(where), 'ok', ui.t(doneText));
        }
      });
    }, function (failure) {
      var text = failure.code === 'invalid_api_key' && kind && !/data cent/i.test(failure.serverMessage)
        ? ui.t('provider.rejected_' + kind) : failure.message;
      self.showStatus();
      ui.say(self.find(where), 'error', text);
    });
  };

  return ProviderStep;
});
