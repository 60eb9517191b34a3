// The right-hand panel of a lead or contact card: the main contact's email, its status at the
// email platform, segments, last sync and last error, and "Sync now".
define(['jquery'], function ($) {
  'use strict';

  var POLL_EVERY_MS = 1000;
  var POLL_FOR_MS = 20000;
  // While the card is open it follows the contact's state (one read of our database per tick, no
  // vendor call), so a stage change made in the card shows its new segment without a reload:
  // every second for a while after the user does something on the page, then less and less often.
  var WATCH_FAST_MS = 1000;
  var WATCH_FAST_FOR_MS = 15000;
  var WATCH_SLOWEST_MS = 10000;
  var STATUS_WORDS = {active: 'subscribed', subscribed: 'subscribed', unconfirmed: 'unconfirmed',
    pending: 'unconfirmed', unsubscribed: 'unsubscribed', bounced: 'bounced', junk: 'spam',
    spam_reported: 'spam', cleaned: 'cleaned', email_changed: 'email_changed', archived: 'archived',
    transactional: 'transactional'};
  var FIELDS = ['email', 'status', 'segments', 'last_sync', 'last_error'];

  function Card(widget, ui, api) {
    this.widget = widget;
    this.ui = ui;
    this.api = api;
    this.entity = null;       // {type: 'leads'|'contacts', id}
    this.contactId = null;
    this.segmentNames = null; // id -> name, read once per card and again for a new segment
    this.namesTried = {};     // segment ids the names were re-read for
    this.timer = null;
    this.delay = WATCH_FAST_MS;
    this.fastUntil = 0;
  }

  // The card's entity, from APP.data.current_card (Kommo: false outside cards; id 0 when new).
  Card.prototype.target = function () {
    var app = window.APP || {};
    var card = app.data && app.data.current_card;
    var area = (this.widget.system() || {}).area;
    var type = typeof app.getBaseEntity === 'function' ? app.getBaseEntity()
      : area === 'ccard' ? 'contacts' : 'leads';
    return card && card.id ? {type: type === 'contacts' ? 'contacts' : 'leads', id: Number(card.id)} : null;
  };

  Card.prototype.render = function () {
    var ui = this.ui;
    var $body = $('<div class="mailsync-ui mailsync-card" data-ms="card">');
    var $list = $('<dl class="mailsync-card__list">');
    FIELDS.forEach(function (field) {
      $list.append($('<dt>').text(ui.t('card.' + field)),
        $('<dd>').attr('data-ms', 'card-' + field.replace('_', '-')).text('…'));
    });
    $body.append($list,
      $('<div class="mailsync__toolbar">').append(ui.button('ms_sync_now', ui.t('card.sync_now'), 'sync-now')),
      $('<p class="mailsync-card__message" data-ms="card-message">'));
    this.widget.render_template({caption: {class_name: 'mailsync-card__caption'}, body: '',
      render: $('<div>').append($body).html()}, {});
    this.$el = $('.mailsync-card[data-ms="card"]').last();
    this.bind();
    return this.start();
  };

  Card.prototype.bind = function () {
    var self = this;
    this.$el.on('click', '[data-ms="sync-now"]', function (e) {
      e.preventDefault();
      self.syncNow();
    });
  };

  Card.prototype.field = function (name) {
    return this.$el.find('[data-ms="card-' + name + '"]');
  };

  Card.prototype.message = function (kind, text) {
    this.ui.say(this.field('message'), kind, text);
  };

  Card.prototype.start = function () {
    var self = this;
    this.entity = this.target();
    if (!this.entity) {
      this.blank();
      this.message('info', this.ui.t('card.unsaved'));
      return Promise.resolve();
    }
    return this.mainContact().then(function (contactId) {
      self.contactId = contactId;
      if (!contactId) {
        self.blank();
        self.message('info', self.ui.t('card.no_contact'));
        return null;
      }
      return self.refresh().then(function () { self.watch(); });
    }).catch(function (failure) {
      self.blank();
      self.message('error', failure.message);
    });
  };

  Card.prototype.watch = function () {
    var self = this;
    this.wake = function () {
      self.fastUntil = Date.now() + WATCH_FAST_FOR_MS;
      self.delay = WATCH_FAST_MS;
      self.schedule();
    };
    $(document).on('change.mailsyncCard click.mailsyncCard', this.wake);
    this.wake();
  };

  Card.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () {
      if (!self.$el || !$.contains(document.documentElement, self.$el[0])) {
        self.destroy();  // the card was closed
        return;
      }
      self.refresh().catch(function () {}).then(function () {
        if (self.timer === null) {
          return;
        }
        self.delay = Date.now() < self.fastUntil ? WATCH_FAST_MS : Math.min(self.delay * 1.5, WATCH_SLOWEST_MS);
        self.schedule();
      });
    }, this.delay);
  };

  // A lead card shows its main contact, read from Kommo's own API on the same origin with the
  // user's session (as Kommo's birthday widget does): the backend is keyed by contact.
  Card.prototype.mainContact = function () {
    var entity = this.entity;
    if (entity.type === 'contacts') {
      return Promise.resolve(entity.id);
    }
    var ui = this.ui;
    return new Promise(function (resolve, reject) {
      $.ajax({url: window.location.origin + '/api/v4/leads/' + entity.id + '?with=contacts', dataType: 'json'})
        .then(function (lead) {
          var contacts = (lead && lead._embedded && lead._embedded.contacts) || [];
          var main = contacts.filter(function (c) { return c.is_main; })[0] || contacts[0];
          resolve(main ? main.id : null);
        }, function (xhr) {
          reject(new Error(ui.t('errors.unknown', {status: (xhr && xhr.status) || 0})));
        });
    });
  };

  Card.prototype.names = function () {
    var self = this;
    if (this.segmentNames) {
      return Promise.resolve(this.segmentNames);
    }
    return this.api.segments().then(function (segments) {
      self.segmentNames = {};
      segments.forEach(function (s) { self.segmentNames[String(s.id)] = s.name; });
      return self.segmentNames;
    }, function () {
      return {};  // not connected any more: ids are still better than nothing
    });
  };

  Card.prototype.refresh = function () {
    var self = this;
    return Promise.all([this.api.contact(this.contactId), this.names()]).then(function (loaded) {
      self.show(loaded[0], loaded[1]);
      return loaded[0];
    });
  };

  Card.prototype.statusText = function (state) {
    var ui = this.ui;
    if (!state) {
      return ui.t('status.not_synced');
    }
    if (state.last_error) {
      return ui.t('status.refused');  // the vendor's reason shows under "Last error"
    }
    var word = STATUS_WORDS[String(state.esp_status || '').toLowerCase()];
    return word ? ui.t('status.' + word) : state.esp_status || ui.t('status.not_synced');
  };

  Card.prototype.show = function (state, names) {
    var ui = this.ui;
    var self = this;
    var segments = ((state && state.segments) || []).map(function (id) {
      if (!(String(id) in names) && !self.namesTried[id]) {
        self.namesTried[id] = true;  // a segment created since the names were read
        self.segmentNames = null;
      }
      return names[String(id)] || id;
    });
    this.field('email').text((state && state.email) || '—');
    this.field('status').text(this.statusText(state))
      .attr('data-status', state ? state.esp_status || (state.last_error ? 'refused' : 'none') : 'none');
    this.field('segments').text(segments.length ? segments.join(', ') : ui.t('card.none'));
    this.field('last-sync').text(state && state.last_synced_at ? ui.when(state.last_synced_at) : ui.t('card.never'));
    this.field('last-error').text((state && state.last_error) || ui.t('card.none'))
      .toggleClass('mailsync__note_error', !!(state && state.last_error));
  };

  Card.prototype.blank = function () {
    var self = this;
    FIELDS.forEach(function (field) { self.field(field.replace('_', '-')).text('—'); });
    this.$el.find('[data-ms="sync-now"]').prop('disabled', true);
  };

  // Resync, then poll the contact until its last sync or error changes or the deadline passes.
  Card.prototype.syncNow = function () {
    var self = this;
    var ui = this.ui;
    var $button = this.$el.find('[data-ms="sync-now"]').prop('disabled', true);
    var target = this.entity.type === 'leads' ? {lead_id: this.entity.id} : {contact_id: this.entity.id};
    this.message('info', ui.t('card.syncing'));
    return this.api.contact(this.contactId).then(function (before) {
      return self.api.resync(target).then(function () { return self.poll(before, Date.now() + POLL_FOR_MS); });
    }).then(function (done) {
      self.message(done ? 'ok' : 'info', ui.t(done ? 'card.synced' : 'card.still_queued'));
    }, function (failure) {
      self.message('error', ui.t('card.failed', {message: failure.message}));
    }).then(function () {
      $button.prop('disabled', false);
    });
  };

  Card.prototype.poll = function (before, deadline) {
    var self = this;
    var mark = function (s) { return s ? [s.last_synced_at, s.last_error, s.esp_status].join('|') : ''; };
    return new Promise(function (resolve) { setTimeout(resolve, POLL_EVERY_MS); }).then(function () {
      return self.refresh();
    }).then(function (after) {
      if (mark(after) !== mark(before)) {
        return true;
      }
      return Date.now() < deadline ? self.poll(before, deadline) : false;
    });
  };

  Card.prototype.destroy = function () {
    clearTimeout(this.timer);
    this.timer = null;
    $(document).off('.mailsyncCard');
    if (this.$el) {
      this.$el.off();
    }
  };

  Card.STATUS_WORDS = STATUS_WORDS;
  return Card;
});
