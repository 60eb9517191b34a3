// The settings modal: banner, platform and key, Mailchimp audience, stage mapping, the sync of
// existing leads, options and activity. Kommo calls open() from the `settings` callback and save()
// from `onSave`.
define(['jquery', './provider.js', './mapping.js', './options.js', './activity.js', './backfill.js'],
  function ($, ProviderStep, MappingTable, Options, Activity, Backfill) {
    'use strict';

    function Settings(widget, ui, api) {
      var self = this;
      this.widget = widget;
      this.ui = ui;
      this.api = api;
      this.account = null;
      this.state = 'loading';   // loading | ready | not_installed | failed
      this.pipelines = [];
      this.pipelinesError = '';
      this.fields = [];
      var changed = function () { self.changed(); };
      this.provider = new ProviderStep(ui, api, function (account) { self.connected(account); });
      this.mapping = new MappingTable(ui, function () { self.options.keepValues(); changed(); });
      this.options = new Options(ui, this.mapping, changed);
      this.activity = new Activity(ui, api);
      this.backfill = new Backfill(ui, api, function () { self.activity.load(self.kind()); });
    }

    Settings.prototype.section = function (hook, title, hint) {
      var $section = $('<section class="mailsync__section">').attr('data-ms-section', hook)
        .append($('<h3 class="mailsync__title">').text(title));
      return hint ? $section.append($('<p class="mailsync__hint">').text(hint)) : $section;
    };

    // Our markup goes into the custom field's slot when the host offers one (Kommo names it
    // `<widget_code>_custom_content`), else above the modal's save controls.
    Settings.prototype.mount = function ($modal) {
      var code = (this.widget.get_settings() || {}).widget_code || 'mailsync';
      var $block = $modal.find('.widget_settings_block').addBack('.widget_settings_block').first();
      this.$hidden = $modal.find('input[name="mapping"]');
      if (!this.$hidden.length) {
        this.$hidden = $('.widget_settings_block input[name="mapping"]');
      }
      this.$root = $('<div class="mailsync-ui mailsync-settings" data-ms="settings">');
      var $slot = $modal.find('#' + code + '_custom_content');
      var $controls = $block.find('.widget_settings_block__controls');
      if ($slot.length) {
        $slot.append(this.$root);
      } else if ($controls.length) {
        $controls.first().before(this.$root);
      } else {
        ($block.length ? $block : $modal).append(this.$root);
      }
    };

    Settings.prototype.open = function ($modal) {
      var self = this;
      this.mount($modal);
      this.$banner = $('<div class="mailsync__banner" data-ms="banner">').hide();
      this.$root.append(this.$banner,
        $('<p class="mailsync__hint mailsync__loading" data-ms="settings-loading">').text(this.ui.t('common.loading')));
      return this.api.account().then(function (account) {
        self.account = account;
        return Promise.all([
          self.api.pipelines().catch(function (failure) { self.pipelinesError = failure.message; return []; }),
          self.api.contactFields().catch(function () { return []; }),
          self.provider.load(account)]);
      }).then(function (loaded) {
        self.pipelines = loaded[0];
        self.fields = loaded[1];
        self.state = 'ready';
        self.render();
      }).catch(function (failure) {
        self.state = failure.code === 'account_not_found' ? 'not_installed' : 'failed';
        self.$root.find('[data-ms="settings-loading"]').remove();
        self.warn(self.state === 'not_installed' ? self.ui.t('banner.not_installed') : failure.message);
      });
    };

    Settings.prototype.warn = function (text) {
      this.$banner.append($('<p>').text(text)).show();
    };

    Settings.prototype.render = function () {
      var ui = this.ui;
      var kind = this.kind();
      this.$root.find('[data-ms="settings-loading"]').remove();
      this.showBanner();
      this.$mappingNote = $('<p class="mailsync__hint" data-ms="mapping-note">');
      this.$suggest = ui.button('ms_suggest', ui.t('mapping.suggest'), 'suggest');
      this.$saveError = $('<p class="mailsync__note_error" data-ms="save-error">');
      this.$root.append(
        this.section('provider', ui.t('provider.title'), ui.t('provider.hint')).append(this.provider.$el),
        this.provider.$audience,
        this.section('mapping', ui.t('mapping.title'), ui.t('mapping.hint')).append(
          $('<div class="mailsync__toolbar">').append(this.$suggest), this.$mappingNote, this.mapping.$el),
        this.$backfill = this.section('backfill', ui.t('backfill.title')).append(this.backfill.$el),
        this.section('options', ui.t('options.title')).append(this.options.$el),
        this.section('activity', ui.t('activity.title'), ui.t('activity.hint')).append(this.activity.$el),
        this.$saveError);
      this.bind();
      this.refreshMapping();
      this.options.load(this.account.options, this.fields, kind);
      this.activity.load(kind);
      this.refreshBackfill();
    };

    // Shown once a working platform and a saved mapping exist: what a sync of existing leads uses.
    Settings.prototype.refreshBackfill = function () {
      if (this.$backfill) {
        this.$backfill.toggle(this.backfill.load(this.account));
      }
    };

    Settings.prototype.bind = function () {
      var self = this;
      this.$root.on('click', '[data-ms="suggest"]', function (e) {
        e.preventDefault();
        self.mapping.suggest();
        self.ui.say(self.$mappingNote, 'info', self.ui.t('mapping.suggested'));
      });
    };

    Settings.prototype.kind = function () {
      return this.account && this.account.provider ? this.account.provider.kind : null;
    };

    // Mapping needs a connected platform, and for Mailchimp a chosen audience (tags live in it).
    Settings.prototype.mappingBlocker = function () {
      var provider = this.account && this.account.provider;
      if (!provider) {
        return 'mapping.need_provider';
      }
      return provider.kind === 'mailchimp' && !provider.list_id ? 'mapping.need_audience' : null;
    };

    Settings.prototype.refreshMapping = function () {
      var blocker = this.mappingBlocker();
      this.$suggest.toggle(!blocker && !this.pipelinesError);
      this.mapping.$el.toggle(!blocker && !this.pipelinesError);
      if (this.pipelinesError && !blocker) {
        this.ui.say(this.$mappingNote, 'error', this.pipelinesError);
      } else {
        this.ui.say(this.$mappingNote, 'info', blocker ? this.ui.t(blocker) : '');
      }
      this.mapping.load(this.pipelines, blocker ? [] : this.provider.segments, this.account.mapping.rules);
    };

    Settings.prototype.showBanner = function () {
      var provider = this.account.provider;
      var texts = [];
      if (this.account.status === 'needs_reauth' || this.account.status === 'disconnected') {
        texts.push(this.ui.t('banner.' + this.account.status));
      }
      if (provider && provider.status === 'key_rejected') {
        texts.push(this.ui.t('banner.key_rejected', {provider: this.ui.providerName(provider.kind)}));
      }
      this.$banner.empty().toggle(texts.length > 0);
      texts.forEach(function (text) { this.warn(text); }, this);
    };

    // After a key or audience was saved: the segments and the banner may have changed.
    Settings.prototype.connected = function (account) {
      this.account = account;
      this.showBanner();
      this.refreshMapping();
      this.options.load(this.options.read(true), this.fields, this.kind());
      this.activity.load(this.kind());
      this.refreshBackfill();
      this.changed();
    };

    Settings.prototype.summary = function (rules) {
      var provider = (this.account && this.account.provider) || {};
      return JSON.stringify({provider: provider.kind || null, list_id: provider.list_id || null,
        rules: rules ? rules.length : 0, saved_at: new Date().toISOString()});
    };

    // Kommo enables its Save button when the custom field's hidden input changes.
    Settings.prototype.changed = function () {
      if (this.$hidden && this.$hidden.length) {
        this.$hidden.val(this.summary(this.account ? this.account.mapping.rules : [])).trigger('change');
      }
    };

    Settings.prototype.createPending = function (ids) {
      var self = this;
      return ids.reduce(function (chain, id) {
        return chain.then(function () {
          var pending = self.mapping.pendingSegment(id);
          return pending ? self.api.createSegment(pending.name).then(function (created) {
            self.mapping.resolvePending(id, created);
          }) : null;
        });
      }, Promise.resolve());
    };

    Settings.prototype.pendingIds = function () {
      var rules = this.mapping.rules();
      var wanted = rules.map(function (r) { return r.segment_id; })
        .concat([this.options.read().new_contact_segment_id]);
      var mapping = this.mapping;
      return wanted.filter(function (id, n) {
        return id && mapping.pendingSegment(id) && wanted.indexOf(id) === n;
      });
    };

    // onSave: create the segments the admin asked for, then store the mapping. Rejects with a
    // plain message (the backend's, on 4xx) so Kommo shows it and keeps the modal open.
    Settings.prototype.save = function (evt) {
      var self = this;
      if ((evt && evt.active === 'N') || this.state === 'not_installed' || this.state === 'failed') {
        return Promise.resolve(true);
      }
      if (this.state !== 'ready') {
        return Promise.reject(new Error(this.ui.t('save.not_ready')));
      }
      this.ui.say(this.$saveError, 'error', '');
      if (this.pipelinesError) {  // saving now would replace the stored rules with none
        return Promise.reject(new Error(this.pipelinesError));
      }
      if (this.mappingBlocker()) {
        this.store(evt, this.account.mapping.rules);
        return Promise.resolve(true);
      }
      return Promise.resolve().then(function () {
        return self.createPending(self.pendingIds());
      }).then(function () {
        return self.api.saveMapping(self.mapping.rules(), self.options.read());
      }).then(function (account) {
        self.account = account;
        self.refreshMapping();
        self.options.load(account.options, self.fields, self.kind());
        self.store(evt, account.mapping.rules);
        self.refreshBackfill();
        return true;
      }).catch(function (failure) {
        self.mapping.render();
        self.ui.say(self.$saveError, 'error', failure.message);
        throw failure;
      });
    };

    Settings.prototype.store = function (evt, rules) {
      var summary = this.summary(rules);
      if (evt && evt.fields) {
        evt.fields.mapping = summary;
      }
      if (this.$hidden && this.$hidden.length) {
        this.$hidden.val(summary);
      }
    };

    Settings.prototype.destroy = function () {
      this.backfill.destroy();
      if (this.$root) {
        this.$root.remove();
      }
    };

    return Settings;
  });
