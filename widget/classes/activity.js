// Step 5 of the settings modal: the last 20 activity rows, failures first, in plain words.
define(['jquery'], function ($) {
  'use strict';

  var LIMIT = 20;
  var ORDER = {failed: 0, skipped: 1, ok: 2};

  // Failures first; within each outcome the backend's newest-first order is kept.
  function ordered(rows) {
    return rows.map(function (row, n) { return {row: row, n: n}; }).sort(function (a, b) {
      var byOutcome = (ORDER[a.row.outcome] || 0) - (ORDER[b.row.outcome] || 0);
      return byOutcome || a.n - b.n;
    }).map(function (item) { return item.row; });
  }

  function Activity(ui, api) {
    this.ui = ui;
    this.api = api;
    this.provider = null;
    this.$list = $('<ul class="mailsync__activity" data-ms="activity-list">');
    this.$el = $('<div>').append(this.$list);
    var self = this;
    this.$el.prepend(ui.button('ms_activity_refresh', ui.t('common.refresh'), 'activity-refresh',
      'mailsync__button_plain mailsync__refresh'));
    this.$el.on('click', '[data-ms="activity-refresh"]', function (e) {
      e.preventDefault();
      self.load(self.provider);
    });
  }

  Activity.prototype.load = function (providerKind) {
    var self = this;
    this.provider = providerKind;
    this.$list.empty().append($('<li class="mailsync__hint">').text(this.ui.t('common.loading')));
    return this.api.activity(LIMIT).then(function (rows) {
      self.render(rows || []);
    }, function (failure) {
      self.$list.empty().append($('<li class="mailsync__note_error">').text(failure.message));
    });
  };

  Activity.prototype.render = function (rows) {
    var self = this;
    this.$list.empty();
    if (!rows.length) {
      this.$list.append($('<li class="mailsync__hint">').text(this.ui.t('activity.empty')));
      return;
    }
    ordered(rows.slice(0, LIMIT)).forEach(function (row) {
      self.$list.append(self.item(row));
    });
  };

  Activity.prototype.item = function (row) {
    var ui = this.ui;
    var outcome = ORDER.hasOwnProperty(row.outcome) ? row.outcome : 'failed';
    var direction = ui.t('activity.' + (row.direction === 'to_kommo' ? 'to_kommo' : 'to_esp'),
      {provider: ui.providerName(this.provider)});
    var $meta = $('<div class="mailsync__activity-meta">').text(
      [ui.when(row.at), direction, row.email].filter(Boolean).join(' · '));
    var $item = $('<li class="mailsync__activity-row">').addClass('mailsync__activity-row_' + outcome)
      .attr({'data-ms': 'activity-row', 'data-outcome': outcome}).append(
        $('<span class="mailsync__badge">').addClass('mailsync__badge_' + outcome).text(ui.t('activity.' + outcome)),
        $('<div class="mailsync__activity-text">').append(
          $('<div class="mailsync__activity-summary">').text(row.summary || ''), $meta));
    if (row.detail) {
      $item.find('.mailsync__activity-text').append($('<div class="mailsync__activity-detail">').text(row.detail));
    }
    return $item;
  };

  Activity.ordered = ordered;
  return Activity;
});
